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


def test_optuna_sweeper_searches_budgets_as_one_sweep(tmp_path, cli_env):
    import yaml

    args = [
        "-m",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler=random",
        "hydra.sweeper.objectives=[accuracy,visual_tokens_llm]",
        "hydra.sweeper.directions=[maximize,minimize]",
        "tokens=int(interval(4,40))",
        "compressor=choice(visionzip,random)",
        *SMALL[1:],
    ]
    proc = run_cli(args, cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [results_file] = tmp_path.glob("multirun/*/*/optuna_results.yaml")
    results = yaml.safe_load(results_file.read_text())
    assert [t["state"] for t in results["trials"]] == ["COMPLETE"] * 3
    assert all(4 <= t["params"]["tokens"] <= 40 for t in results["trials"])
    # the Pareto front: no best trial is beaten on both objectives by another trial
    values = [t["values"] for t in results["trials"]]
    for best in results["best"]:
        acc, tokens = best["values"]
        assert not any(a > acc and t < tokens for a, t in values)
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("vzexp")
    found = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in found if r.data.tags.get("vzexp.sweep") == "parent"]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    # each trial is a child run whose visual tokens are the budget Optuna asked for
    asked = sorted(t["params"]["tokens"] for t in results["trials"])
    assert sorted(int(r.data.metrics["visual_tokens"]) for r in children) == asked
    logged = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "optuna_results.yaml" in logged


def test_optuna_sweeper_rejects_a_space_it_cannot_search(tmp_path, cli_env):
    args = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.directions=[maximize,minimize]"]
    proc = run_cli([*args, "tokens=8,16"], cli_env, tmp_path)
    assert proc.returncode != 0
    assert "hydra.sweeper.directions" in proc.stderr and "per objective" in proc.stderr


def test_a_shipped_experiment_lands_in_an_mlflow_experiment_of_its_name(tmp_path, cli_env):
    # +experiment=search_budget: the Optuna sweep as shipped, cut to 2 trials on 2 questions
    args = ["+experiment=search_budget", "hydra.sweeper.n_trials=2", *SMALL[1:]]
    proc = run_cli(args, cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    assert client.get_experiment_by_name("vzexp") is None
    experiment = client.get_experiment_by_name("search_budget")
    found = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in found if r.data.tags.get("vzexp.sweep") == "parent"]
    assert parent.info.run_name == "search_budget" and parent.info.status == "FINISHED"
    assert len([r for r in found if "mlflow.parentRunId" in r.data.tags]) == 2
