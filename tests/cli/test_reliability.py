"""Reliability across runs: the same config and seed give identical metrics and identical kept
token indices; one failing job of a sweep does not stop the others and is recorded on the parent."""

from __future__ import annotations

import json

from mlflow.tracking import MlflowClient
from vzexp_testing import run_cli

ARGS = ["data.limit=12", "data.batch_size=4", "task.max_new_tokens=2", "tokens=12"]
TIMINGS = ("_ms_", "_s", "peak_memory")


def test_same_config_and_seed_give_identical_metrics_and_kept_indices(tmp_path, cli_env):
    outputs = []
    for name in ("first", "second"):
        cwd = tmp_path / name
        cwd.mkdir()
        proc = run_cli([*ARGS, "logger=none"], cli_env, cwd)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (path,) = cwd.glob("outputs/*/*/predictions.jsonl")
        outputs.append([json.loads(line) for line in path.read_text().splitlines()])
    first, second = outputs
    assert all(len(r["kept"]) > 0 for r in first)  # VisionZip's dominant indices, per sample
    keys = ("id", "prediction", "correct", "kept", "visual_tokens")
    assert [[r[k] for k in keys] for r in first] == [[r[k] for k in keys] for r in second]


def test_random_draws_follow_the_sample_not_the_batch(tmp_path, cli_env):
    kept = []
    for batch_size in (4, 3):
        cwd = tmp_path / str(batch_size)
        cwd.mkdir()
        args = [*ARGS[:1], f"data.batch_size={batch_size}", *ARGS[2:], "compressor=random"]
        proc = run_cli([*args, "logger=none"], cli_env, cwd)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (path,) = cwd.glob("outputs/*/*/predictions.jsonl")
        kept.append({r["id"]: r["kept"] for r in map(json.loads, path.read_text().splitlines())})
    assert kept[0] == kept[1]
    assert len({tuple(k) for k in kept[0].values()}) > 1  # and samples differ from each other


def test_a_failing_job_leaves_the_others_running_and_is_recorded_on_the_parent(tmp_path, cli_env):
    proc = run_cli(["-m", "compressor.layer=-2,-9,-3", *ARGS[:3]], cli_env, tmp_path)
    assert proc.returncode != 0  # the sweep as a whole failed, and says why without a traceback
    assert "Traceback" not in proc.stderr
    assert "vzexp: error: compressor.layer=-9 is not allowed" in proc.stderr
    [summary] = [line for line in proc.stderr.splitlines() if line.startswith("vzexp: sweep:")]
    assert "1 job failed" in summary and "#1 (compressor.layer=-9" in summary
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("vzexp")
    found = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in found if r.data.tags.get("vzexp.sweep") == "parent"]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    # ... but jobs 0 and 2 ran to the end, and the parent says which one failed and why
    assert sorted(c.data.params["compressor.layer"] for c in children) == ["-2", "-3"]
    assert all(c.info.status == "FINISHED" for c in children)
    assert parent.info.status == "FAILED"
    failed = {k: v for k, v in parent.data.tags.items() if k.startswith("vzexp.sweep.failed.")}
    assert list(failed) == ["vzexp.sweep.failed.1"]
    assert "compressor.layer=-9" in failed["vzexp.sweep.failed.1"]
    assert "ConfigError" in failed["vzexp.sweep.failed.1"]
