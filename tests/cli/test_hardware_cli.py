"""`auto` from the command line: the values this machine resolved are the run's first log line
and its params, beside the CPU capability torch reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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


def test_an_explicit_half_dtype_without_native_support_runs_with_one_warning(tmp_path, cli_env):
    """float16 on a CPU without AVX512-FP16/AMX-FP16: the run completes, probes once (cached in
    its VZEXP_CACHE) and warns in one line exactly when the probe measured it slower."""
    if hardware.cpu_native("float16"):
        pytest.skip("this CPU computes float16 natively: nothing to warn about")
    args = ["model.dtype=float16", "trainer.precision=32-true", "logger=none", *FAST]
    proc = run_cli(args, cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (probe,) = (Path(cli_env["VZEXP_CACHE"]) / "hardware").glob("cpu-probe-*.json")
    ratio = json.loads(probe.read_text())["slowdown"]["float16"]
    output = (proc.stdout + proc.stderr).splitlines()
    warnings = [line for line in output if "[vzexp][WARNING]" in line]
    if ratio < 1.2:
        assert warnings == []
    else:
        (line,) = warnings
        assert f"{ratio:.1f}x as long as in float32" in line
        assert "model.dtype=auto" in line
