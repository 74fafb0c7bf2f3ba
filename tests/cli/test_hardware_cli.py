"""`auto` from the command line: the values this machine resolved are the run's first log line
and its params, beside the CPU capability torch reports."""

from __future__ import annotations

from mlflow.tracking import MlflowClient
from vzexp_testing import run_cli

from vzexp import hardware

FAST = ["data.limit=2", "data.batch_size=2", "task.max_new_tokens=1", "task.overlays=0"]


def test_auto_is_resolved_printed_first_and_logged(tmp_path, cli_env):
    proc = run_cli(["model.dtype=auto", *FAST], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = hardware.resolve("auto", "auto", "auto", "auto")
    logged = [line for line in (proc.stdout + proc.stderr).splitlines() if "[vzexp]" in line]
    first = logged[0]
    assert "on this machine:" in first
    assert f"model.dtype={expected.dtype} model.device={expected.device}" in first
    assert f"trainer.precision={expected.precision}" in first
    assert f"hardware.cpu_capability={hardware.cpu_capability()}" in first
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name("vzexp").experiment_id])
    params = run.data.params
    assert params["model.dtype"] == expected.dtype != "auto"
    assert params["model.device"] == expected.device
    assert params["trainer.accelerator"] == expected.accelerator
    assert params["trainer.precision"] == expected.precision
    assert params["hardware.cpu_capability"] == hardware.cpu_capability()
