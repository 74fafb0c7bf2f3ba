"""The published tables as data: cells copied from docs/visionzip.md with their sources and
flags, the schema check's one-line errors, and `vzexp.report --published` without MLflow."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from vzexp.published import PublishedError, available, load, published_dir


def test_the_visionzip_table_is_shipped_and_loads():
    assert "visionzip" in available()
    pub = load("visionzip")
    assert [t.model for t in pub.tables] == ["llava15_7b", "llava_next_7b"]
    assert {m.compressor for m in pub.methods.values()} == {
        "none",
        "fastv",
        "sparsevlm",
        "visionzip",
    }
    assert pub.method_for("visionzip", tuned=True).label == "VisionZip ‡"


@pytest.mark.parametrize(
    ("model", "method", "budget", "column", "value", "source", "status"),
    [
        # golden cells, as docs/visionzip.md "Published results" gives them
        ("llava15_7b", "vanilla", 576, "MME", 1862, "W T O", "confirmed"),
        ("llava15_7b", "visionzip", 192, "MME", 1782.6, "X", "confirmed"),
        ("llava15_7b", "visionzip", 64, "VQAv2", 72.4, "T W", "disputed"),
        ("llava15_7b", "fastv", 64, "POPE", 48.0, "F K", "disputed"),
        ("llava15_7b", "visionzip_tuned", 192, "MMMU", None, None, "unconfirmed"),
        ("llava15_7b", "visionzip_tuned", 128, "POPE", 83.7, "O", "confirmed"),
        ("llava_next_7b", "sparsevlm", 160, "MMB", 63.1, "S", "disputed"),
        ("llava_next_7b", "visionzip", 320, "POPE", 82.1, "FC E", "confirmed"),
        ("llava_next_7b", "visionzip_tuned", 160, "GQA", None, None, "unconfirmed"),
    ],
)
def test_golden_cells(model, method, budget, column, value, source, status):
    cell = load("visionzip").table_for(model).row(method, budget).cells[column]
    assert (cell.value, cell.source, cell.status) == (value, source, status)


def test_disputed_values_keep_both_readings_and_the_llava_next_budgets_map_per_view():
    pub = load("visionzip")
    fastv = pub.table_for("llava15_7b").row("fastv", 64)
    assert fastv.cells["POPE"].text() == "48.0/59.6"
    assert fastv.cells["POPE"].alternatives == ((59.6, "W"),)
    nxt = pub.table_for("llava_next_7b")
    assert [nxt.vzexp_tokens(b) for b in (640, 320, 160)] == [128, 64, 32]
    assert nxt.paper_budget(32) == 160 and nxt.row("sparsevlm", 160).avg.text() == "86.4/86.2"
    (paper,) = [e for e in pub.efficiency if e.paper]
    assert [(t.method, t.total_s, t.prefill_ms) for t in paper.rows] == [
        ("vanilla", 2293, 218),
        ("fastv", 1792, 119),
        ("sparsevlm", 1895, 128),
        ("visionzip", 756, 27.8),
    ]


def test_each_benchmark_column_names_the_metric_it_reads():
    cols = load("visionzip").benchmarks
    assert cols["MME"].metrics == ("perception",) and cols["MME"].scale == 1
    assert cols["POPE"].metrics == ("split_mean/f1", "f1") and cols["POPE"].data == "pope"
    assert cols["SQA"].data == "scienceqa" and cols["MM-Vet"].data is None


def broken(tmp_path, edit) -> str:
    raw = yaml.safe_load((published_dir() / "visionzip.yaml").read_text())
    edit(raw)
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    with pytest.raises(PublishedError) as err:
        load(str(path))
    return str(err.value)


def test_a_malformed_entry_fails_with_one_line_naming_file_and_key(tmp_path):
    def bad_value(raw):
        raw["tables"][0]["rows"][1]["cells"]["GQA"] = "fifty"

    message = broken(tmp_path, bad_value)
    assert message.startswith("mine.yaml: tables[0].rows[1].cells.GQA: expected int or float")
    assert "\n" not in message

    def unknown_method(raw):
        raw["tables"][1]["rows"][0]["method"] = "vanila"

    assert broken(tmp_path, unknown_method) == (
        "mine.yaml: tables[1].rows[0].method: 'vanila' is not listed under `methods`"
    )

    def unknown_source(raw):
        raw["tables"][0]["rows"][0]["source"] = "W Z"

    assert "tables[0].rows[0].source: source Z is not listed" in broken(tmp_path, unknown_source)

    with pytest.raises(PublishedError, match="neither a shipped one"):
        load("no_such_paper")


def test_report_published_prints_the_table_alone(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "vzexp.report", "--published", "visionzip"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**__import__("os").environ, "MLFLOW_TRACKING_URI": "sqlite:////nonexistent/x.db"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "| 576 | Vanilla | 61.9 | 64.7 | 1862 | 85.9 | 69.5 | 78.5 | 58.2 | 36.3 | 58.6 |" in out
    assert "| 64 | FastV | 46.1 | 48.0 | 1256 | 48.0/59.6 |" in out
    assert "| 160 | VisionZip ‡ | u | u | u | u | u | u | u | u | 95.5/95.2 |" in out
    assert "| llava_next_7b | VisionZip | 160 | 756 | 3.0x | 27.8 | 7.8x |" in out
    assert not (tmp_path / "mlflow.db").exists()
    bad = subprocess.run(
        [sys.executable, "-m", "vzexp.report", "--published", "nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
