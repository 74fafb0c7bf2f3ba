"""Predictions across processes and restarts: a killed run resumed equals an uninterrupted one,
DDP with 2 CPU processes equals one process, and task=score re-scores a file without the model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient
from vzexp_testing import run_cli

ARGS = ["data.limit=9", "data.batch_size=2", "task.max_new_tokens=2"]


def merged(cwd: Path) -> list[dict]:
    (path,) = (cwd / "predictions").glob("*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def metrics_of(env) -> list[dict]:
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("vzexp")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    return [{"status": r.info.status, **r.data.metrics} for r in runs]


def same_predictions(a: list[dict], b: list[dict]) -> bool:
    keys = ("id", "prediction", "answer", "correct")
    return [tuple(r[k] for k in keys) for r in a] == [tuple(r[k] for k in keys) for r in b]


def test_ddp_two_processes_equal_one(tmp_path, cli_env):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    single.mkdir(), ddp.mkdir()
    proc = run_cli(ARGS, cli_env, single)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 9 samples over 2 ranks: 5 + 4, and each rank's last batch is short
    proc = run_cli([*ARGS, "trainer.devices=2", "trainer.strategy=ddp"], cli_env, ddp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert same_predictions(merged(single), merged(ddp))
    assert len(merged(ddp)) == 9
    one, two = metrics_of(cli_env)  # one MLflow run per job: rank 1 does not track
    assert two["samples"] == one["samples"] == 9
    assert two["accuracy"] == one["accuracy"]


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, cli_env):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    args = ["data.limit=48", "data.batch_size=1", "task.max_new_tokens=2", "logger=none"]
    assert run_cli(args, cli_env, whole).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "vzexp", *args],
        cwd=killed,
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    lines = 0
    while time.time() < deadline and proc.poll() is None:
        parts = (
            list((killed / "predictions").glob("*.part"))
            if (killed / "predictions").is_dir()
            else []
        )
        lines = sum(len(p.read_text().splitlines()) for p in parts)
        if lines >= 3:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert 3 <= lines < 48, "the run was not killed part-way"
    assert not list((killed / "predictions").glob("*.jsonl"))  # nothing merged yet
    resumed = run_cli(args, cli_env, killed)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "already done" in resumed.stdout + resumed.stderr
    assert same_predictions(merged(whole), merged(killed))


def test_score_task_rescores_a_predictions_file(tmp_path, cli_env):
    assert run_cli(ARGS, cli_env, tmp_path).returncode == 0
    (path,) = (tmp_path / "predictions").glob("*.jsonl")
    proc = run_cli(["task=score", f"task.predictions={path}", "data.limit=9"], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated, scored = metrics_of(cli_env)
    assert scored["accuracy"] == evaluated["accuracy"] and scored["samples"] == 9
    assert scored["accuracy/count"] == evaluated["accuracy/count"]
    missing = run_cli(["task=score", "task.predictions=nope.jsonl"], cli_env, tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == (
        "vzexp: error: task.predictions='nope.jsonl': no such file"
    )
