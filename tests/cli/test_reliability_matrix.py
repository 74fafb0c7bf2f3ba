"""The reliability matrix: signals, concurrent first runs, stale data, foreign predictions files and
values checked before a model loads. Each case asserts the exit code, one `vzexp:` line on stderr,
no traceback, and what is left behind: the predictions file and the MLflow run (never RUNNING).
Signal and concurrency cases run real `python -m vzexp` processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from vzexp_testing import run_cli

FAST = ["data.limit=2", "task.max_new_tokens=1", "data.batch_size=2"]


def vzexp_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("vzexp:")]


def runs(env: dict[str, str], experiment: str = "vzexp") -> list:
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def statuses(env: dict[str, str]) -> list[str]:
    return sorted(r.info.status for r in runs(env))


def start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vzexp", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def predicted_lines(cwd: Path) -> int:
    """Complete prediction lines on disk under cwd (the per-rank part files and merged files)."""
    files = [*cwd.rglob("predictions/*.part"), *cwd.rglob("predictions/*.jsonl")]
    return sum(len([x for x in p.read_text().splitlines() if x.endswith("}")]) for p in files)


def signal_after_first_batch(proc: subprocess.Popen, cwd: Path, signum: int) -> None:
    deadline = time.monotonic() + 240
    while predicted_lines(cwd) == 0:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no prediction written within the deadline"
        time.sleep(0.2)
    proc.send_signal(signum)


# ---- signals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_run_at_the_next_batch_and_ends_it_killed(tmp_path, cli_env, signum):
    args = ["data.limit=40", "task.max_new_tokens=1", "data.batch_size=2", "task.overlays=0"]
    proc = start(args, cli_env, tmp_path)
    signal_after_first_batch(proc, tmp_path, signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr[-3000:]
    assert "Traceback" not in stderr
    [line] = vzexp_lines(stderr)
    assert f"stopped by {signal.Signals(signum).name}" in line and "rerun" in line
    done = predicted_lines(tmp_path)
    assert 0 < done < 40  # kept for the rerun, and the run stopped early
    [run] = runs(cli_env)
    assert run.info.status == "KILLED"
    assert "Interrupted" in run.data.tags["vzexp.error"]


def test_sigkill_then_rerun_ends_the_orphan_killed_and_finishes(tmp_path, cli_env):
    args = ["data.limit=6", "task.max_new_tokens=1", "data.batch_size=2", "task.overlays=0"]
    proc = start(args, cli_env, tmp_path)
    signal_after_first_batch(proc, tmp_path, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert statuses(cli_env) == ["RUNNING"]  # what SIGKILL leaves: no process to end the run
    first = predicted_lines(tmp_path)
    rerun = run_cli(args, cli_env, tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Traceback" not in rerun.stderr
    assert first >= 2
    orphan, finished = sorted(runs(cli_env), key=lambda r: r.info.start_time)
    assert (orphan.info.status, finished.info.status) == ("KILLED", "FINISHED")
    assert "ended without ending the run" in orphan.data.tags["vzexp.error"]
    assert finished.data.metrics["samples"] == 6


def test_ctrl_c_in_a_sweep_is_one_line_and_ends_parent_and_child_killed(tmp_path, cli_env):
    args = ["-m", "tokens=12,24", "data.limit=40", "task.max_new_tokens=1", "data.batch_size=2"]
    proc = start([*args, "task.overlays=0"], cli_env, tmp_path)
    signal_after_first_batch(proc, tmp_path, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert len(vzexp_lines(stderr)) == 1, stderr[-3000:]
    found = runs(cli_env)
    assert sorted(r.info.status for r in found) == ["KILLED", "KILLED"]  # parent, first job
    assert any(r.data.tags.get("vzexp.sweep") == "parent" for r in found)
