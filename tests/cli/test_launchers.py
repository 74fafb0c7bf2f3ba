"""Sweeps through Hydra launchers: joblib (hydra/launcher=parallel) and submitit's local executor
(hydra/launcher=local, what SLURM runs); each is one parent MLflow run with its jobs as children."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from vzexp_testing import run_cli

SMALL = ["tokens=8,16", "data.limit=2", "data.batch_size=2", "task.max_new_tokens=1"]


@pytest.mark.parametrize("launcher", ["parallel", "local"])
def test_sweep_through_a_launcher(tmp_path, cli_env, launcher):
    proc = run_cli(["-m", f"hydra/launcher={launcher}", *SMALL], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("vzexp")
    found = client.search_runs([experiment.experiment_id])
    parents = [r for r in found if r.data.tags.get("vzexp.sweep") == "parent"]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    assert {r.info.status for r in found} == {"FINISHED"}
    assert sorted(r.data.metrics["visual_tokens"] for r in children) == [8, 16]
    if launcher == "local":  # submitit kept its job folders under the sweep dir
        assert list(tmp_path.glob("multirun/*/*/.submitit/*"))


def test_slurm_launcher_config_composes(tmp_path, cli_env):
    args = [
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "--cfg",
        "hydra",
        "-p",
        "hydra.launcher",
    ]
    proc = run_cli(args, cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SlurmLauncher" in proc.stdout and "partition: gpu" in proc.stdout
