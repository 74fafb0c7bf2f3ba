"""The paper_llava15 experiment end to end on the tiny llava-hf checkpoint and fixture files for
every benchmark under one paths.eval_root: the compressed sweep, the full-token sweep through the
local (submitit) launcher, the report in the paper's layout, and a re-issued sweep that resumes every
finished cell instead of recomputing it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from benchmark_fixtures import fixtures
from vzexp_testing import run_cli

SMALL = ["data.limit=2", "data.batch_size=2", "task.max_new_tokens=1"]
# two of the nine benchmarks and a budget the tiny 8x8 grid allows; the experiment gives the rest
SUBSET = ["data=mme,pope", "compressor=visionzip,sparsevlm", "tokens=12"]


@pytest.mark.slow
def test_paper_llava15_sweep_report_and_resume(tmp_path, cli_env, tiny_checkpoint):
    fixtures(tmp_path / "eval")
    base = ["-m", "+experiment=paper_llava15", f"paths.eval_root={tmp_path / 'eval'}"]
    base += [f"model.path={tiny_checkpoint}", *SMALL]
    compressed = run_cli([*base, *SUBSET], cli_env, tmp_path, timeout=900)
    assert compressed.returncode == 0, compressed.stderr[-3000:]
    full = ["data=mme,pope", "compressor=none", "tokens=576", "hydra/launcher=local"]
    proc = run_cli([*base, *full], cli_env, tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]

    report = subprocess.run(
        [sys.executable, "-m", "vzexp.report", "--experiment", "paper_llava15"]
        + ["--parent", "latest", "--compare", "visionzip", "--out", str(tmp_path / "r")],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    text = (tmp_path / "r" / "paper.md").read_text()
    lines = text.splitlines()
    assert "| Budget | Method | MME | POPE | Avg. % |" in lines
    rows = [line.split(" | ")[:2] for line in lines[6:9]]
    assert rows == [["| 576", "Vanilla"], ["| 12", "SparseVLM"], ["| 12", "VisionZip"]]
    assert lines[6].endswith("| 100.0 |")
    assert "| 576 | Vanilla | 1862 | 85.9 | 100.0 | 100 |" in text
    assert "### Efficiency (POPE)" in text

    # re-issued, the sweep finds every cell's predictions and recomputes none of them: the
    # records, timings included, are the first run's
    files = sorted(p for p in (tmp_path / "predictions").rglob("*") if p.is_file())
    assert len({p.name.split("-t")[0] for p in files}) == 6  # 2 benchmarks x 3 strategies
    before = {p: p.read_bytes() for p in files}
    again = run_cli([*base, *SUBSET], cli_env, tmp_path, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.read_bytes() for p in files} == before
