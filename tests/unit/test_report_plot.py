"""The report's plot adapts to the sweep: bars for one budget, lines with a distinct colour and
marker per series otherwise, a title with benchmark, model and samples."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
from matplotlib.colors import to_hex

from vzexp.report import plot, rounded, with_variants


def row(variant_override: str, budget: int, accuracy: float, samples: int = 40) -> dict:
    return {
        "benchmark": "shapes",
        "model": "tiny_shapes",
        "strategy": "visionzip",
        "budget": budget,
        "tokens": budget,
        "visual_tokens_llm": float(budget),
        "accuracy": accuracy,
        "metrics": {"samples": float(samples)},
        "overrides": [f"tokens={budget}", variant_override],
    }


@pytest.fixture
def figures(monkeypatch):
    """The figures plot() draws, kept open to inspect."""
    kept, close = [], plt.close
    monkeypatch.setattr(plt, "close", kept.append)
    yield kept
    for fig in kept:
        close(fig)


def test_one_budget_gives_one_bar_per_variant(tmp_path, figures):
    settings = [f"compressor.merge={m}-{p}" for m in ("add", "mean") for p in range(6)]
    rows = with_variants([row(s, 24, 0.05 * i) for i, s in enumerate(settings)])
    plot(rows, tmp_path / "p.png")
    (ax,) = figures[0].axes
    assert len(ax.patches) == 12 and not ax.lines
    assert {t.get_text() for t in ax.get_yticklabels()} == {r["variant"] for r in rows}
    assert ax.get_title() == "shapes / tiny_shapes, 40 samples"
    assert len({to_hex(p.get_facecolor()) for p in ax.patches}) == 12


def test_twenty_series_over_budgets_are_told_apart(tmp_path, figures):
    rows = with_variants(
        [row(f"compressor.layer=-{s}", b, 0.5) for s in range(20) for b in (8, 24)]
        + [row("compressor.layer=-0", 8, 0.5, samples=30)]
    )
    plot(rows, tmp_path / "p.png")
    (ax,) = figures[0].axes
    styles = {(to_hex(line.get_color()), line.get_marker()) for line in ax.lines}
    assert len(ax.lines) == 20 and len(styles) == 20
    assert not ax.patches
    assert ax.get_title() == "shapes / tiny_shapes, 30-40 samples"


def test_report_rows_round_timing_and_leave_the_rest():
    r = rounded(
        {"prefill_ms_per_sample": 12.345678, "selection_overhead": 0.1234567, "run_id": "x"}
    )
    assert r == {"prefill_ms_per_sample": 12.35, "selection_overhead": 0.1235, "run_id": "x"}
