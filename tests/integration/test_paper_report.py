"""`vzexp.report --compare visionzip` on a real SQLite MLflow store holding hand-logged runs with
the params and metrics vzexp's jobs log: the paper's layout (golden markdown), Avg. % as
recomputed by hand, uncertain published cells marked, a user's own strategy as a row with no
published counterpart, the full-token runs borrowed from their own sweep, the artifacts logged on
the parent."""

from __future__ import annotations

import csv

import pytest
from mlflow.tracking import MlflowClient

from vzexp.report import main

EXPERIMENT = "paper_llava15"
T0 = 1_700_000_000_000  # ms


def log_sweep(client, experiment_id, jobs, start):
    """A sweep as vzexp.sweep and vzexp.run leave it: a parent, then one FINISHED child per job."""
    parent = client.create_run(experiment_id, start_time=start, tags={"vzexp.sweep": "parent"})
    for k, (data, strategy, tokens, metrics, extra) in enumerate(jobs):
        overrides = f"+experiment={EXPERIMENT} model.path=/m data={data} compressor={strategy}"
        overrides += f" tokens={tokens} {extra}".rstrip()
        run = client.create_run(
            experiment_id,
            start_time=start + 1000 * k,
            tags={"mlflow.parentRunId": parent.info.run_id, "vzexp.overrides": overrides},
        )
        rid = run.info.run_id
        params = {
            "data.name": data,
            "model.name": "llava15_7b",
            "compressor.name": strategy,
            "tokens": str(tokens),
            "model.projector": "/tuned" if "model.projector" in extra else "None",
        }
        for key, value in params.items():
            client.log_param(rid, key, value)
        full = strategy == "none"
        timing = {
            "visual_tokens": 576.0 if full else float(tokens),
            "visual_tokens_llm": 576.0 if full else float(tokens),
            "prefill_ms_per_sample": 100.0 if full else 25.0,
        }
        for key, value in {**metrics, **timing}.items():
            client.log_metric(rid, key, value)
        # wall-clock: 600 s for the full-token runs, 200 s for the others
        client.set_terminated(
            rid, "FINISHED", end_time=start + 1000 * k + (600_000 if full else 200_000)
        )
    client.set_terminated(parent.info.run_id, "FINISHED")
    return parent.info.run_id


FULL = [
    ("gqa", "none", 64, {"accuracy": 0.60}, ""),
    ("mme", "none", 64, {"accuracy": 0.7, "perception": 1800.0}, ""),
    ("pope", "none", 64, {"accuracy": 0.9, "f1": 0.8, "split_mean/f1": 0.86}, ""),
]
COMPRESSED = [
    ("gqa", "visionzip", 64, {"accuracy": 0.54}, ""),
    ("mme", "visionzip", 64, {"accuracy": 0.6, "perception": 1620.0}, ""),
    ("pope", "visionzip", 64, {"accuracy": 0.8, "split_mean/f1": 0.774}, ""),
    ("gqa", "fastv", 64, {"accuracy": 0.45}, ""),
    ("mme", "fastv", 64, {"accuracy": 0.5, "perception": 1260.0}, ""),
    ("pope", "fastv", 64, {"accuracy": 0.6, "split_mean/f1": 0.43}, ""),
    ("gqa", "visionzip", 64, {"accuracy": 0.57}, "model.projector=/tuned"),
    ("gqa", "pool", 64, {"accuracy": 0.50}, ""),
    ("mme", "pool", 64, {"accuracy": 0.5, "perception": 1500.0}, ""),
]

GOLDEN = """\
## LLaVA-1.5-7B (paper Table 1): model=llava15_7b

### This sweep

| Budget | Method | GQA | MME | POPE | Avg. % |
|---:|---|---:|---:|---:|---:|
| 576 | Vanilla | 60.0 | 1800.0 | 86.0 | 100.0 |
| 64 | FastV | 45.0 | 1260.0 | 43.0 | 65.0 |
| 64 | VisionZip | 54.0 | 1620.0 | 77.4 | 90.0 |
| 64 | VisionZip ‡ | 57.0 |  |  | 95.0 |
| 64 | pool | 50.0 | 1500.0 |  | 83.3 |

### Published (VisionZip, arXiv 2412.04467 (CVPR 2025))

| Budget | Method | GQA | MME | POPE | Avg. % | Paper's Avg. % |
|---:|---|---:|---:|---:|---:|---:|
| 576 | Vanilla | 61.9 | 1862 | 85.9 | 100.0 | 100 |
| 64 | FastV | 46.1 | 1256 | 48.0/59.6 | 65.9* | 75.6 |
| 64 | VisionZip | 55.1 | 1690 | 77.0 | 89.8 | 94.0 |
| 64 | VisionZip ‡ | 57.0 |  |  | 92.1 | 95.2 |

### Difference (this sweep - published)

| Budget | Method | GQA | MME | POPE | Avg. % |
|---:|---|---:|---:|---:|---:|
| 576 | Vanilla | -1.9 | -62.0 | +0.1 | 0.0 |
| 64 | FastV | -1.1 | +4.0 | -5.0* | -0.9* |
| 64 | VisionZip | -1.1 | -70.0 | +0.4 | +0.2 |
| 64 | VisionZip ‡ | 0.0 |  |  | +2.9 |

### Efficiency (POPE)

| Budget | Method | Visual tokens (LLM) | Prefill ms | Speed-up | Total s | Speed-up | Published prefill ms | Speed-up | Published total s | Speed-up |
|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
| 576 | Vanilla | 576 | 100.0 | 1.0x | 600 | 1.0x | 102 [FC] | 1.0x | 1025 [FC] | 1.0x |
| 64 | FastV | 64 | 25.0 | 4.0x | 200 | 3.0x |  |  |  |  |
| 64 | VisionZip | 64 | 25.0 | 4.0x | 200 | 3.0x | 69.2 [FC] | 1.5x | 730 [FC] | 1.4x |
"""


@pytest.fixture()
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(EXPERIMENT)
    log_sweep(client, experiment_id, FULL, T0)  # the full-token sweep, run first
    parent = log_sweep(client, experiment_id, COMPRESSED, T0 + 3_600_000)
    return uri, client, parent


def test_the_report_has_the_papers_shape_and_compares_with_the_published_table(store, tmp_path):
    uri, client, parent = store
    out = tmp_path / "r"
    argv = ["--experiment", EXPERIMENT, "--parent", "latest", "--compare", "visionzip"]
    assert main([*argv, "--uri", uri, "--out", str(out)]) == 0
    text = (out / "paper.md").read_text()
    assert text.startswith(GOLDEN)
    # Avg. % by hand from the cells: the mean over the row's benchmarks of score / full score
    sweep = {line.split(" | ")[1]: line for line in text.splitlines()[6:11]}
    assert f"| {100 * (54 / 60 + 1620 / 1800 + 77.4 / 86) / 3:.1f} |" in sweep["VisionZip"]
    assert f"| {100 * (45 / 60 + 1260 / 1800 + 43 / 86) / 3:.1f} |" in sweep["FastV"]
    assert f"| {100 * (50 / 60 + 1500 / 1800) / 2:.1f} |" in sweep["pool"]
    # the published cells' own average over the same benchmarks, from docs/visionzip.md
    published = 100 * (55.1 / 61.9 + 1690 / 1862 + 77.0 / 85.9) / 3
    assert f"| 64 | VisionZip | 55.1 | 1690 | 77.0 | {published:.1f} | 94.0 |" in text
    # the user's own strategy: a row of the sweep, absent from the published and difference blocks
    assert text.count("| pool |") == 1
    with (out / "paper.csv").open() as f:
        cells = list(csv.DictReader(f))
    fastv_pope = next(c for c in cells if c["method"] == "FastV" and c["benchmark"] == "POPE")
    assert fastv_pope["published"] == "48.0/59.6" and fastv_pope["published_status"] == "disputed"
    assert float(fastv_pope["difference"]) == pytest.approx(43.0 - 48.0)
    assert {c["published"] for c in cells if c["method"] == "pool"} == {""}
    assert (out / "paper_vs_tokens.png").read_bytes()[:4] == b"\x89PNG"
    logged = {a.path for a in client.list_artifacts(parent, "report")}
    assert logged == {"report/paper.md", "report/paper.csv", "report/paper_vs_tokens.png"}
