"""task=tune end to end on the shipped default model: one MLflow run with the baseline and the
tuned accuracy and the projector as an artifact that a later evaluation loads by run id or path;
DDP with 2 CPU processes trains as 1 process with the same global batch; a killed tuning resumes
from its checkpoint to the uninterrupted result."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file
from vzexp_testing import run_cli

SMALL = [
    "task=tune",
    "train_data=shapes",
    "train_data.scenes=16",
    "tokens=12",
    "data.limit=8",
    "data.batch_size=8",
    "task.max_new_tokens=2",
]


def finished_runs(env, experiment="vzexp"):
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])
    return client, runs


def projector(cwd):
    (path,) = cwd.glob("outputs/*/*/projector/projector.safetensors")
    return load_file(path)


def test_tune_logs_baseline_tuned_and_a_projector_a_later_eval_loads(tmp_path, cli_env):
    proc = run_cli([*SMALL, "task.batch_size=4", "task.publish=tiny_x"], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client, [run] = finished_runs(cli_env)
    assert run.info.status == "FINISHED"
    m = run.data.metrics
    for key in ("baseline/accuracy", "accuracy", "tune/accuracy_gain", "tune/epoch_seconds"):
        assert key in m, key
    assert m["tune/steps"] == 4 and m["tune/train_records"] == 16
    history = client.get_metric_history(run.info.run_id, "tune/loss")
    assert [h.step for h in history] == [0, 1, 2, 3]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "projector")}
    assert artifacts == {"projector/projector.safetensors", "projector/projector.json"}
    # task.publish copied the projector into the cache, where ${vzexp_trained:tiny_x} finds it
    published = Path(cli_env["VZEXP_CACHE"]) / "trained" / "tiny_x"
    assert sorted(p.name for p in published.iterdir()) == [
        "projector.json",
        "projector.safetensors",
    ]
    assert torch.equal(
        load_file(published / "projector.safetensors")["linear_1.weight"],
        projector(tmp_path)["linear_1.weight"],
    )
    (tuned_predictions,) = tmp_path.glob("outputs/*/*/predictions.jsonl")
    tuned = [json.loads(line)["prediction"] for line in tuned_predictions.read_text().splitlines()]
    # a later evaluation with that projector, by MLflow run id, answers the same (loading by
    # directory: tests/integration/test_tuning.py)
    later = tmp_path / "later"
    later.mkdir()
    args = [
        "tokens=12",
        "data.limit=8",
        "task.max_new_tokens=2",
        f"model.projector={run.info.run_id}",
    ]
    proc = run_cli(args, cli_env, later)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = later.glob("outputs/*/*/predictions.jsonl")
    assert [json.loads(x)["prediction"] for x in path.read_text().splitlines()] == tuned
    # and by the published name, as model=small_real_tuned loads its build
    args[-1] = "model.projector=${vzexp_trained:tiny_x}"
    (later / "published").mkdir()
    proc = run_cli(args, cli_env, later / "published")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = (later / "published").glob("outputs/*/*/predictions.jsonl")
    assert [json.loads(x)["prediction"] for x in path.read_text().splitlines()] == tuned


def test_ddp_two_processes_train_as_one_with_the_same_global_batch(tmp_path, cli_env):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    single.mkdir(), ddp.mkdir()
    base = [*SMALL, "task.baseline=false", "task.epochs=2"]
    proc = run_cli([*base, "task.batch_size=8"], cli_env, single)
    assert proc.returncode == 0, proc.stderr[-3000:]
    args = [*base, "task.batch_size=4", "trainer.devices=2", "trainer.strategy=ddp"]
    proc = run_cli(args, cli_env, ddp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client, (one, two) = finished_runs(cli_env)
    curves = [
        [h.value for h in client.get_metric_history(r.info.run_id, "tune/loss")] for r in (one, two)
    ]
    assert len(curves[0]) == len(curves[1]) == 4  # 16 records / global batch 8, 2 epochs
    torch.testing.assert_close(
        torch.tensor(curves[1]), torch.tensor(curves[0]), rtol=1e-4, atol=1e-5
    )
    a, b = projector(single), projector(ddp)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6)


def test_a_killed_tuning_resumes_from_its_checkpoint_to_the_same_projector(tmp_path, cli_env):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    args = [*SMALL, "train_data.scenes=48", "task.epochs=8", "task.baseline=false", "logger=none"]
    assert run_cli(args, cli_env, whole).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "vzexp", *args],
        cwd=killed,
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while not list(killed.glob("checkpoints/*/last.ckpt")) and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # after the first epoch's checkpoint, before the end
    proc.wait()
    assert list(killed.glob("checkpoints/*/last.ckpt")), "no checkpoint was written"
    assert not list(killed.glob("outputs/*/*/projector")), "the run ended before it was killed"
    resumed = run_cli([*args, "task.resume=true"], cli_env, killed)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming the tuning from" in resumed.stderr + resumed.stdout
    a, b = projector(whole), projector(killed)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6)


def test_sigterm_stops_the_tuning_at_the_next_step_and_a_rerun_resumes(tmp_path, cli_env):
    """SIGTERM during the second epoch or later: the step in progress finishes, the run ends
    KILLED in one line with exit 143, the last finished epoch's checkpoint is what is left, and
    the same command resumes from it (redoing the epoch cut short) to the projector of a run
    never stopped."""
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    whole.mkdir(), stopped.mkdir()
    args = [*SMALL, "train_data.scenes=48", "task.epochs=8", "task.baseline=false"]
    steps_per_epoch, total = 3, 24  # 48 records in batches of 16, 8 epochs
    assert run_cli([*args, "logger=none"], cli_env, whole).returncode == 0
    with open(tmp_path / "stderr", "w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vzexp", *args],
            cwd=stopped,
            env=cli_env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        deadline = time.time() + 240
        while not list(stopped.glob("checkpoints/*/last.ckpt")) and time.time() < deadline:
            assert proc.poll() is None, "the run ended before the first epoch's checkpoint"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=240)
        err.seek(0)
        stderr = err.read()
    assert proc.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr
    [line] = [x for x in stderr.splitlines() if x.startswith("vzexp:")]
    assert "stopped by SIGTERM" in line and "rerun" in line
    client, [run] = finished_runs(cli_env)
    assert run.info.status == "KILLED"
    assert run.data.tags["vzexp.error"].startswith("Interrupted")
    (checkpoint,) = stopped.glob("checkpoints/*/last.ckpt")
    saved = torch.load(checkpoint, weights_only=False)["global_step"]
    assert saved % steps_per_epoch == 0 and 0 < saved < total  # an epoch's end, mid-training
    logged = [h.step for h in client.get_metric_history(run.info.run_id, "tune/loss")]
    assert logged == list(range(len(logged))) and saved <= len(logged) < total
    assert not list(stopped.glob("outputs/*/*/projector")), "the tuning was not stopped"

    resumed = run_cli(args, cli_env, stopped)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming the tuning from" in resumed.stderr + resumed.stdout
    client, [_, finished] = finished_runs(cli_env)
    assert finished.info.status == "FINISHED"
    assert finished.data.metrics["tune/steps"] == total
    a, b = projector(whole), projector(stopped)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6)


def test_stages_run_in_order_each_from_the_weights_the_stage_before_left(tmp_path, cli_env):
    """A two-stage recipe trains what the same two stages give as two commands, the second
    loading the first's projector: one MLflow run, each stage's loss under its own name."""
    staged, first, second = tmp_path / "staged", tmp_path / "first", tmp_path / "second"
    for d in (staged, first, second):
        d.mkdir()
    base = [*SMALL, "task.baseline=false", "task.batch_size=4"]
    stage_two = ["task.tune_projector=false", "task.llm_layers=1", "task.lr=5e-4"]
    stages = "task.stages=[['task.epochs=2'],[" + ",".join(f"'{o}'" for o in stage_two) + "]]"
    proc = run_cli([*base, stages], cli_env, staged)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "stage 2 of 2: task.tune_projector=false" in proc.stderr + proc.stdout
    proc = run_cli([*base, "task.epochs=2"], cli_env, first)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (stage_one,) = first.glob("outputs/*/*/projector")
    proc = run_cli([*base, *stage_two, f"model.projector={stage_one}"], cli_env, second)
    assert proc.returncode == 0, proc.stderr[-3000:]

    (kept,) = staged.glob("outputs/*/*/stages/1/projector/projector.safetensors")
    for name, value in load_file(stage_one / "projector.safetensors").items():
        torch.testing.assert_close(load_file(kept)[name], value, rtol=0, atol=1e-6)
    (final,) = staged.glob("outputs/*/*/projector")
    (chained,) = second.glob("outputs/*/*/projector")
    for weights in ("projector.safetensors", "llm_layers.safetensors"):
        expected = load_file(chained / weights)
        for name, value in load_file(final / weights).items():
            torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6)
    client, runs = finished_runs(cli_env)
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["stage1/tune/steps"] == 8 and run.data.metrics["stage2/tune/steps"] == 4
    for k, steps in ((1, 8), (2, 4)):
        history = client.get_metric_history(run.info.run_id, f"stage{k}-tune/loss")
        assert [h.step for h in history] == list(range(steps))
    assert "accuracy" in run.data.metrics
