"""The report's table: one row per strategy setting, % of the all-tokens run (own or borrowed);
the MLflow experiment a run lands in."""

from __future__ import annotations

import pytest

from vzexp.report import markdown, with_percentages, with_variants
from vzexp.tracking import experiment_name


def row(strategy, accuracy, overrides, budget=24, benchmark="shapes", data_seed=""):
    return {
        "data_seed": data_seed,
        "benchmark": benchmark,
        "model": "tiny_shapes",
        "strategy": strategy,
        "tokens": budget if strategy != "none" else 196,
        "budget": budget,
        "accuracy": accuracy,
        "overrides": overrides.split(),
    }


def test_an_ablation_sweep_gets_one_row_per_setting_not_one_averaged_cell():
    rows = with_variants(
        [
            row("visionzip", 0.50, "+experiment=ablation_merge compressor.merge=add data.limit=9"),
            row("visionzip", 0.40, "+experiment=ablation_merge compressor.merge=mean data.limit=9"),
        ]
    )
    assert [r["variant"] for r in rows] == ["visionzip merge=add", "visionzip merge=mean"]
    table = markdown(with_percentages(rows))
    assert "| visionzip merge=add | 0.500 |" in table
    assert "| visionzip merge=mean | 0.400 |" in table


def test_seeds_and_the_table_axes_are_averaged_not_split_into_rows():
    rows = with_variants(
        [
            row("random", 0.40, "compressor=random compressor.seed=0 tokens=24"),
            row("random", 0.50, "compressor=random compressor.seed=1 tokens=24"),
            row("none", 0.80, "compressor=none tokens=24"),
        ]
    )
    assert {r["variant"] for r in rows} == {"random", "none"}
    table = markdown(with_percentages(rows))
    # mean 0.45 of 0.80 = 56.25%, over 2 runs
    assert "| random | 0.450 ± 0.071 (56.2%) [2 runs] |" in table
    assert "| all 196 tokens | 0.800 (100%) |" in table


def test_a_full_token_run_repeated_per_budget_counts_once_per_seed():
    # `-m compressor=none,visionzip tokens=12,24 seed=0,1`: `none` ignores tokens, so its four
    # jobs are two measurements (seeds 0 and 1), not four
    rows = [
        row("none", acc, f"compressor=none tokens={b} seed={seed}", budget=b)
        for b in (12, 24)
        for seed, acc in ((0, 0.80), (1, 0.70))
    ]
    rows += [
        row("visionzip", 0.60, f"compressor=visionzip tokens={b} seed=0", budget=b)
        for b in (12, 24)
    ]
    table = markdown(with_percentages(with_variants(rows)))
    # mean 0.75, sample std of (0.80, 0.70) = 0.0707
    assert "| all 196 tokens | 0.750 ± 0.071 (100%) [2 runs] | |" in table
    assert "| visionzip | 0.600 (80.0%) | 0.600 (80.0%) |" in table


def test_the_all_tokens_reference_can_come_from_another_experiment():
    rows = with_variants([row("visionzip", 0.60, "compressor.merge=add")])
    reference = with_variants([row("none", 0.75, "compressor=none"), row("pool", 0.1, "")])
    table = markdown(with_percentages(rows, reference))
    assert "| all 196 tokens | 0.750 (100%) |" in table
    assert "| visionzip | 0.600 (80.0%) |" in table
    assert "pool" not in table  # only the reference run is borrowed


@pytest.mark.parametrize(
    ("configured", "choices", "expected"),
    [
        (None, {"experiment": "ablation_merge", "model": "tiny_shapes"}, "ablation_merge"),
        ("mine", {"experiment": "ablation_merge"}, "mine"),
        (None, {"model": "tiny_shapes"}, "vzexp"),
        (None, None, "vzexp"),
    ],
)
def test_the_mlflow_experiment_follows_the_hydra_experiment(configured, choices, expected):
    assert experiment_name(configured, choices) == expected


def test_atomic_files_are_whole_or_keep_their_previous_content(tmp_path):
    from vzexp.atomic import atomic_path

    target = tmp_path / "report.md"
    with atomic_path(target) as tmp:
        tmp.write_text("first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed while writing")
    assert target.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_chosen_metrics_get_a_table_of_their_own():
    rows = [
        row("none", 0.8, "compressor=none tokens=24"),
        row("none", 0.8, "compressor=none tokens=48", budget=48),
        row("visionzip", 0.6, "compressor=visionzip seed=0"),
        row("visionzip", 0.5, "compressor=visionzip seed=1"),
    ]
    for r, ms in zip(rows, (10.0, 10.0, 4.0, 5.0)):
        r["metrics"] = {"dialogue_turn_ms": ms}
    table = markdown(with_percentages(with_variants(rows)), ["dialogue_turn_ms"])
    assert "| strategy | tokens | dialogue_turn_ms |" in table
    assert "| all tokens | all | 10 |" in table  # the full-token job repeated per budget, once
    assert "| visionzip | 24 | 4.5 |" in table  # the mean over the cell's runs
