"""`python -m vzexp` in a subprocess: real Hydra composition, real MLflow store, one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from vzexp_testing import run_cli

from vzexp.list import groups, options

FAST = ["data.limit=4", "data.batch_size=2", "task.max_new_tokens=2"]


def runs(env):
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("vzexp")
    return client, client.search_runs([experiment.experiment_id]) if experiment else []


def predictions(client, run) -> list[dict]:
    """The run's per-sample records (its predictions.jsonl artifact)."""
    path = client.download_artifacts(run.info.run_id, "predictions.jsonl")
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


# The shipped tiny_shapes model on the first 4 shapes test samples (greedy decoding): which it
# answers right is fixed by the model, the data and the strategy; a change in any shows here.
@pytest.mark.parametrize(
    ("compressor", "tokens", "expected_tokens", "expected_correct"),
    [
        ("visionzip", 32, 32, [1, 1, 0, 0]),
        ("none", 64, 196, [1, 1, 1, 1]),  # all 14 x 14 patches whatever `tokens` says
        ("dominant", 16, 16, [0, 1, 0, 0]),
    ],
)
def test_run_writes_an_mlflow_run_with_metrics(
    tmp_path, cli_env, compressor, tokens, expected_tokens, expected_correct
):
    proc = run_cli([f"compressor={compressor}", f"tokens={tokens}", *FAST], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client, found = runs(cli_env)
    assert len(found) == 1
    run = found[0]
    assert run.info.status == "FINISHED"
    m = run.data.metrics
    assert m["samples"] == 4
    assert m["visual_tokens"] == expected_tokens
    records = predictions(client, run)
    assert [r["id"] for r in records] == [f"shapes-test-{i:05d}" for i in range(4)]
    assert [r["correct"] for r in records] == expected_correct
    assert all(r["visual_tokens"] == expected_tokens for r in records)
    # the run's accuracy is the mean of its records', and the results table prints it
    assert m["accuracy"] == sum(expected_correct) / 4
    assert re.search(rf"^\| accuracy +\| {m['accuracy']:.4g} +\|$", proc.stdout, re.M)
    assert (
        m["prefill_ms_per_sample"] > 0 and m["generate_ms_per_sample"] >= m["prefill_ms_per_sample"]
    )
    assert m["peak_memory_mb"] > 0
    p = run.data.params
    assert (
        p["compressor.name"] == compressor and p["tokens"] == str(tokens) and p["data.limit"] == "4"
    )
    assert run.data.tags["choice.compressor"] == compressor
    assert "mlflow.source.git.commit" in run.data.tags
    assert "vzexp.command" in run.data.tags
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"predictions.jsonl", "resolved_config.yaml"} <= artifacts
    # the store is the SQLite file MLFLOW_TRACKING_URI names (cli_env: tmp_path/mlflow.db)
    assert (tmp_path / "mlflow.db").is_file()


@pytest.mark.slow
def test_the_default_run_scores_the_shipped_model(tmp_path, cli_env):
    """`python -m vzexp` with no arguments: tiny_shapes, VisionZip at its 24 tokens, the whole
    shapes test split (800 samples), greedy decoding; the same answers on every run."""
    proc = run_cli([], cli_env, tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client, [run] = runs(cli_env)
    m = run.data.metrics
    assert (m["samples"], m["visual_tokens"]) == (800, 24)
    assert sum(r["correct"] for r in predictions(client, run)) == 497
    assert m["accuracy"] == 497 / 800
    assert re.search(r"^\| accuracy +\| 0\.6212 +\|$", proc.stdout, re.M)


def test_checkpoint_model_by_path(tmp_path, cli_env, tiny_checkpoint):
    proc = run_cli(
        ["model=llava_hf", f"model.path={tiny_checkpoint}", "tokens=12", *FAST], cli_env, tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, found = runs(cli_env)
    assert found[0].data.metrics["visual_tokens"] == 12
    assert "encoder.name" not in found[0].data.params  # encoder/LLM come from the checkpoint


def test_help_lists_the_groups(tmp_path, cli_env):
    proc = run_cli(["--help"], cli_env, tmp_path)
    assert proc.returncode == 0
    for group in groups():  # each group's line names every option of the registry
        [line] = [x for x in proc.stdout.splitlines() if x.startswith(f"{group}: ")]
        assert set(options(group)) <= set(line.removeprefix(f"{group}: ").split(", ")), group


def test_crash_after_start_ends_the_run_failed(tmp_path, cli_env):
    broken = tmp_path / "broken-ckpt"
    broken.mkdir()
    (broken / "config.json").write_text(
        '{"model_type": "llava", "vision_config": {"model_type": "clip_vision_model", "image_size": 56,'
        ' "patch_size": 7, "num_hidden_layers": 3}, "text_config": {"model_type": "llama"}}'
    )
    proc = run_cli(
        ["model=llava_hf", f"model.path={broken}", "tokens=12"], cli_env, tmp_path, timeout=120
    )
    assert proc.returncode == 2
    assert "could not be loaded" in proc.stderr
    _, found = runs(cli_env)
    assert found[0].info.status == "FAILED"
    assert "could not be loaded" in found[0].data.tags["vzexp.error"]
