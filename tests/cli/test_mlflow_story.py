"""What the MLflow UI shows of a two-variable sweep in a real SQLite store: children named after
what varies, a described and summarized parent, the dataset as each run's input, the effective
params, and resumed runs marked with timing only from the samples they computed."""

from __future__ import annotations

import csv

from mlflow.tracking import MlflowClient
from vzexp_testing import run_cli

SWEEP = ["-m", "compressor.merge_space=keys,hidden", "tokens=8,24"]
SMALL = ["data.limit=4", "task.max_new_tokens=1"]
NAMES = {f"visionzip-t{t}-merge_space={s}" for t in (8, 24) for s in ("keys", "hidden")}


def sweep_runs(client):
    experiment = client.get_experiment_by_name("vzexp")
    found = client.search_runs(
        [experiment.experiment_id], max_results=100, order_by=["attributes.start_time DESC"]
    )
    parents = [r for r in found if r.data.tags.get("vzexp.sweep") == "parent"]
    parent = parents[0]  # the newest sweep
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, children, found


def test_a_sweep_tells_its_story_and_a_rerun_is_marked_resumed(tmp_path, cli_env):
    proc = run_cli([*SWEEP, *SMALL], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    parent, children, _ = sweep_runs(client)
    assert {c.info.run_name for c in children} == NAMES  # four children, four names
    # the sweep's last line says where to look
    last = proc.stdout.strip().splitlines()[-1]
    assert parent.info.run_id in last and "'vzexp'" in last
    assert f"mlflow ui --backend-store-uri {cli_env['MLFLOW_TRACKING_URI']}" in last

    # the parent: named, described, the shared params, the best child, the per-child table
    assert parent.info.run_name == "sweep"
    note = parent.data.tags["mlflow.note.content"]
    assert "python -m vzexp -m compressor.merge_space=keys,hidden tokens=8,24" in note
    assert "grid: compressor.merge_space=keys,hidden x tokens=8,24" in note
    assert "samples per job: 4" in note
    shared = parent.data.params
    assert shared["data.limit"] == "4" and shared["compressor.name"] == "visionzip"
    assert "tokens" not in shared and "compressor.merge_space" not in shared
    assert "compressor.dominant" not in shared  # 7 at 8 tokens, 20 at 24
    best = max(c.data.metrics["accuracy"] for c in children)
    assert parent.data.metrics["best_accuracy"] == best
    winner = parent.data.tags["vzexp.best.run_id"]
    assert [c.data.metrics["accuracy"] for c in children if c.info.run_id == winner] == [best]
    assert parent.data.tags["vzexp.best.run_name"] in NAMES
    table = client.download_artifacts(parent.info.run_id, "children.csv", str(tmp_path))
    with open(table) as f:
        rows = list(csv.DictReader(f))
    assert {r["run"] for r in rows} == NAMES and float(rows[0]["accuracy"]) == best

    for child in children:
        p = child.data.params
        # the split VisionZip used, the samples evaluated, no model.tokens beside tokens=8
        split = {"8": ("7", "1"), "24": ("20", "4")}[p["tokens"]]
        assert (p["compressor.dominant"], p["compressor.contextual"]) == split
        assert p["data.samples"] == "4"
        assert ("model.tokens" in p) == (p["tokens"] == "24")  # tiny_shapes' own budget is 24
        (given,) = child.inputs.dataset_inputs
        assert given.dataset.name == "shapes"
        tags = {t.key: t.value for t in given.tags}
        assert tags["limit"] == "4" and tags["split"] == "test" and tags["samples"] == "4"
        assert "vzexp.resumed" not in child.data.tags
        assert child.data.metrics["prefill_ms_per_sample"] > 0
        logged = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert "vzexp.log" in logged and "overlays" in logged
    digests = {c.inputs.dataset_inputs[0].dataset.digest for c in children}
    assert len(digests) == 1  # the same questions

    # the UI opens the experiment as "Model training"; a kind the user picks instead stands
    experiment = client.get_experiment_by_name("vzexp")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    client.set_experiment_tag(
        experiment.experiment_id, "mlflow.experimentKind", "genai_development"
    )

    # the same sweep again: every child resumes all four samples and times nothing
    proc = run_cli([*SWEEP, *SMALL], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again, children, _ = sweep_runs(client)
    assert again.info.run_id != parent.info.run_id
    assert {c.info.run_name for c in children} == NAMES
    for child in children:
        assert child.data.tags["vzexp.resumed"] == "4 of 4"
        assert "resumed" in child.data.tags["vzexp.timing"]
        assert "accuracy" in child.data.metrics
        assert not any(k.endswith("_ms_per_sample") for k in child.data.metrics)
        assert "peak_memory_mb" not in child.data.metrics
        assert client.list_artifacts(child.info.run_id, "overlays")  # drawn though resumed

    kind = client.get_experiment_by_name("vzexp").tags["mlflow.experimentKind"]
    assert kind == "genai_development"

    # one run over more samples: resumes four, times the two it computed
    single_run = [
        "compressor.merge_space=keys",
        "tokens=8",
        "data.limit=6",
        "task.max_new_tokens=1",
    ]
    proc = run_cli(single_run, cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, _, found = sweep_runs(client)
    single = found[0]
    assert single.info.run_name == "visionzip-t8"
    assert single.data.tags["vzexp.resumed"] == "4 of 6"
    assert "vzexp.timing" not in single.data.tags
    assert single.data.metrics["prefill_ms_per_sample"] > 0
