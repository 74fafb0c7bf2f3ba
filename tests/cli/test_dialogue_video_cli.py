"""Dialogues and videos through the CLI on the default model, into MLflow."""

from __future__ import annotations

import json

from mlflow.tracking import MlflowClient
from vzexp_testing import run_cli


def only_run(env):
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    [run] = client.search_runs([client.get_experiment_by_name("vzexp").experiment_id])
    return run


def test_dialogues_reuse_the_cache_and_report_the_time_saved(tmp_path, cli_env):
    args = ["data=shapes_dialogue", "data.limit=3", "task.dialogue_baseline=true"]
    proc = run_cli(args, cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run(cli_env)
    m = run.data.metrics
    assert run.info.status == "FINISHED" and m["dialogues"] == 3 and m["samples"] > 3
    assert m["dialogue_reencode_agreement"] == 1.0  # same tokens, same greedy answers
    assert m["dialogue_prefill_tokens_per_turn"] < m["dialogue_reencode_prefill_tokens_per_turn"]
    assert "dialogue_time_saved" in m and m["visual_tokens"] == 24
    (path,) = tmp_path.glob("outputs/*/*/predictions.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 3 and sum(len(r["turns"]) for r in records) == m["samples"]
    assert {"prediction", "correct", "turn_s", "reencode_turn_s"} <= set(records[0]["turns"][0])


def test_a_video_is_its_frames_each_with_the_budget(tmp_path, cli_env):
    proc = run_cli(["data=shapes_video", "data.limit=4", "tokens=12"], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = only_run(cli_env).data.metrics
    assert m["visual_tokens"] == 4 * 12  # 4 frames x 12 tokens
    assert {"accuracy/direction", "accuracy/order"} <= set(m)
