"""A multirun sweep in MLflow: one parent run holding the sweep's overrides, one child per job
tagged with the parent (what the UI nests by) and with its own overrides; a failed job leaves
the parent FAILED."""

from __future__ import annotations

import csv
import subprocess
import sys

from mlflow.tracking import MlflowClient
from vzexp_testing import run_cli

SMALL = ["data.limit=2", "data.batch_size=2", "task.max_new_tokens=1"]


def runs(env):
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("vzexp")
    return client.search_runs([experiment.experiment_id], max_results=100)


def test_three_by_three_sweep_is_one_parent_with_nine_children(tmp_path, cli_env):
    sweep = ["-m", "tokens=8,16,24", "compressor=none,visionzip,random"]
    proc = run_cli([*sweep, *SMALL], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = runs(cli_env)
    parents = [r for r in found if r.data.tags.get("vzexp.sweep") == "parent"]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 9 and len(found) == 10
    (parent,) = parents
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["vzexp.sweep.overrides"].startswith(
        "tokens=8,16,24 compressor=none,visionzip,random"
    )
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    combos = {(c.data.params["compressor.name"], c.data.params["tokens"]) for c in children}
    assert combos == {(s, t) for s in ("none", "visionzip", "random") for t in ("8", "16", "24")}
    assert all(
        f"tokens={c.data.params['tokens']}" in c.data.tags["vzexp.overrides"] for c in children
    )
    # the report of that sweep: table, CSV and plot, also logged on the parent run
    report = subprocess.run(
        [sys.executable, "-m", "vzexp.report", "--parent", "latest", "--out", str(tmp_path / "r")],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    table = (tmp_path / "r" / "report.md").read_text()
    assert "| all 196 tokens |" in table and "(100%)" in table
    assert "| visionzip |" in table and "| random |" in table and "8 tokens" in table
    with (tmp_path / "r" / "report.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9 and all(r["percent_of_full"] for r in rows)
    assert (tmp_path / "r" / "accuracy_vs_tokens.png").read_bytes()[:4] == b"\x89PNG"
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert logged == {"report/report.md", "report/report.csv", "report/accuracy_vs_tokens.png"}


def test_a_failed_job_leaves_the_parent_failed(tmp_path, cli_env):
    proc = run_cli(["-m", "tokens=8,500", *SMALL], cli_env, tmp_path)
    assert proc.returncode == 1  # Hydra: the sweep ran, one job failed
    found = runs(cli_env)
    (parent,) = [r for r in found if r.data.tags.get("vzexp.sweep") == "parent"]
    assert parent.info.status == "FAILED"
    assert [r.info.status for r in found if r is not parent] == ["FINISHED"]
