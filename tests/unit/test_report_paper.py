"""The paper-shaped matrix from job rows (no MLflow): a user's own published file compared beside
the shipped one, each row with the file that has its method; a strategy no file has stays a row
of the sweep alone."""

from __future__ import annotations

from vzexp.published import load
from vzexp.report.paper import matrices, matrix_markdown

MINE = """\
paper: MyBaseline
reference: my preprint
sources: {A: "my preprint, Table 1"}
benchmarks:
  GQA: {data: gqa, metric: accuracy, scale: 100}
methods:
  vanilla: {label: Vanilla, compressor: none}
  pool: {label: Pooling (mine), compressor: pool}
tables:
  - id: mine
    title: My table
    model: llava15_7b
    full_budget: 576
    columns: [GQA]
    rows:
      - {method: vanilla, budget: 576, source: A, cells: {GQA: 60.0}}
      - {method: pool, budget: 64, source: A, cells: {GQA: 50.0}}
"""


def job(strategy, accuracy, budget=64):
    return {
        "benchmark": "gqa",
        "model": "llava15_7b",
        "strategy": strategy,
        "variant": strategy,
        "budget": budget,
        "metrics": {"accuracy": accuracy},
        "tuned": False,
        "visual_tokens": 576.0 if strategy == "none" else float(budget),
    }


def test_a_users_published_file_compares_its_own_method(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text(MINE)
    jobs = [job("none", 0.60), job("visionzip", 0.54), job("pool", 0.45), job("random", 0.30)]
    (m,) = matrices(jobs, [load("visionzip"), load(str(mine))])
    text = matrix_markdown(m)
    published = text.split("### Published")[1].split("### Difference")[0]
    assert "(VisionZip, arXiv 2412.04467 (CVPR 2025); MyBaseline, my preprint)" in published
    assert "| 64 | VisionZip | 55.1 | 89.0 |" in published  # 55.1 / 61.9, VisionZip's vanilla
    assert "| 64 | Pooling (mine) | 50.0 | 83.3 |" in published  # 50.0 / 60.0, its own vanilla
    assert "random" not in published
    sweep = text.split("### Published")[0]
    assert "| 64 | random | 30.0 | 50.0 |" in sweep
    assert "| 64 | Pooling (mine) | 45.0 | 75.0 |" in sweep
