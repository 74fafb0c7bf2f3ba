"""`python -m vzexp` in a subprocess: real Hydra composition, real MLflow store, one-line errors."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from vzexp_testing import run_cli

FAST = ["data.limit=4", "data.batch_size=2", "task.max_new_tokens=2"]


def runs(env):
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("vzexp")
    return client, client.search_runs([experiment.experiment_id]) if experiment else []


@pytest.mark.parametrize(
    ("compressor", "tokens", "expected_tokens"),
    [("visionzip", 32, 32), ("none", 64, 196), ("dominant", 16, 16)],
)
def test_run_writes_an_mlflow_run_with_metrics(
    tmp_path, cli_env, compressor, tokens, expected_tokens
):
    proc = run_cli([f"compressor={compressor}", f"tokens={tokens}", *FAST], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| accuracy" in proc.stdout  # the results table
    client, found = runs(cli_env)
    assert len(found) == 1
    run = found[0]
    assert run.info.status == "FINISHED"
    m = run.data.metrics
    assert m["samples"] == 4
    assert m["visual_tokens"] == expected_tokens
    assert 0.0 <= m["accuracy"] <= 1.0
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
    lines = (tmp_path / "mlflow.db").exists()
    assert lines


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
    for group in ("encoder", "llm", "model", "compressor", "data", "task", "trainer", "logger"):
        assert f"{group}:" in proc.stdout
    assert "visionzip" in proc.stdout


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
