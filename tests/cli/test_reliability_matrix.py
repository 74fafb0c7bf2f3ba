"""The reliability matrix: signals, concurrent first runs, stale data, foreign predictions files and
values checked before a model loads. Each case asserts the exit code, one `vzexp:` line on stderr,
no traceback, and what is left behind: the predictions file and the MLflow run (never RUNNING).
Signal and concurrency cases run real `python -m vzexp` processes."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from benchmark_fixtures import picture, real_benchmarks
from mlflow.tracking import MlflowClient
from vzexp_testing import run_cli

from vzexp.tracking import PROCESS_TAG, store_lock

FAST = ["data.limit=2", "task.max_new_tokens=1", "data.batch_size=2"]


def vzexp_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("vzexp:")]


def runs(env: dict[str, str], experiment: str = "vzexp") -> list:
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def statuses(env: dict[str, str]) -> list[str]:
    return sorted(r.info.status for r in runs(env))


def start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vzexp", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def predicted_lines(cwd: Path) -> int:
    """Complete prediction lines on disk under cwd (the per-rank part files and merged files)."""
    files = [*cwd.rglob("predictions/*.part"), *cwd.rglob("predictions/*.jsonl")]
    return sum(len([x for x in p.read_text().splitlines() if x.endswith("}")]) for p in files)


def signal_after_first_batch(proc: subprocess.Popen, cwd: Path, signum: int) -> None:
    deadline = time.monotonic() + 240
    while predicted_lines(cwd) == 0:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no prediction written within the deadline"
        time.sleep(0.2)
    proc.send_signal(signum)


# ---- signals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_run_at_the_next_batch_and_ends_it_killed(tmp_path, cli_env, signum):
    args = ["data.limit=40", "task.max_new_tokens=1", "data.batch_size=2", "task.overlays=0"]
    proc = start(args, cli_env, tmp_path)
    signal_after_first_batch(proc, tmp_path, signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr[-3000:]
    assert "Traceback" not in stderr
    [line] = vzexp_lines(stderr)
    assert f"stopped by {signal.Signals(signum).name}" in line and "rerun" in line
    done = predicted_lines(tmp_path)
    assert 0 < done < 40  # kept for the rerun, and the run stopped early
    [run] = runs(cli_env)
    assert run.info.status == "KILLED"
    assert "Interrupted" in run.data.tags["vzexp.error"]


def test_sigkill_then_rerun_ends_the_orphan_killed_and_finishes(tmp_path, cli_env):
    args = ["data.limit=24", "task.max_new_tokens=1", "data.batch_size=1", "task.overlays=0"]
    proc = start(args, cli_env, tmp_path)
    signal_after_first_batch(proc, tmp_path, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert statuses(cli_env) == ["RUNNING"]  # what SIGKILL leaves: no process to end the run
    first = predicted_lines(tmp_path)
    rerun = run_cli(args, cli_env, tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Traceback" not in rerun.stderr
    assert 1 <= first < 24
    orphan, finished = sorted(runs(cli_env), key=lambda r: r.info.start_time)
    assert (orphan.info.status, finished.info.status) == ("KILLED", "FINISHED")
    assert "ended without ending the run" in orphan.data.tags["vzexp.error"]
    assert finished.data.metrics["samples"] == 24
    # and the resumed run's results are those of a run never interrupted
    whole = tmp_path / "whole"
    whole.mkdir()
    uninterrupted = run_cli([*args, "logger=none"], cli_env, whole)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    keys = ("id", "prediction", "correct", "kept")
    [resumed_file] = (tmp_path / "predictions").glob("*.jsonl")
    [whole_file] = (whole / "predictions").glob("*.jsonl")
    assert [[json.loads(x)[k] for k in keys] for x in resumed_file.read_text().splitlines()] == [
        [json.loads(x)[k] for k in keys] for x in whole_file.read_text().splitlines()
    ]


def test_sigterm_before_the_first_batch_ends_the_run_killed(tmp_path, cli_env):
    """Outside the loop (the dataset or model loading) the signal stops the run at once. The
    tiny model can load and reach its first batch between two polls of the store, so the
    signal lands before the loop (nothing predicted) or in its first batch (that batch
    written, then the stop): either way far short of the 40 samples."""
    args = ["data.limit=40", "task.max_new_tokens=1", "data.batch_size=2", "task.overlays=0"]
    proc = start(args, cli_env, tmp_path)
    deadline = time.monotonic() + 240
    while True:  # the run is open: what follows is the model loading
        assert proc.poll() is None and time.monotonic() < deadline
        if (tmp_path / "mlflow.db").exists():
            with store_lock(cli_env["MLFLOW_TRACKING_URI"]):  # not while it creates the schema
                if statuses(cli_env) == ["RUNNING"]:
                    break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr
    [line] = vzexp_lines(stderr)
    assert "stopped by SIGTERM" in line
    assert predicted_lines(tmp_path) in (0, 2)
    assert statuses(cli_env) == ["KILLED"]


def test_ctrl_c_in_a_sweep_is_one_line_and_ends_parent_and_child_killed(tmp_path, cli_env):
    args = ["-m", "tokens=12,24", "data.limit=40", "task.max_new_tokens=1", "data.batch_size=2"]
    proc = start([*args, "task.overlays=0"], cli_env, tmp_path)
    signal_after_first_batch(proc, tmp_path, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert len(vzexp_lines(stderr)) == 1, stderr[-3000:]
    found = runs(cli_env)
    assert sorted(r.info.status for r in found) == ["KILLED", "KILLED"]  # parent, first job
    assert any(r.data.tags.get("vzexp.sweep") == "parent" for r in found)


# `python -m vzexp` with SIGTERM sent from inside its k-th write to the MLflow store: a SQLAlchemy
# hook sends it after the write's SQL ran, while its transaction is still open; at exit the
# number of writes is printed (k=0: no signal)
SIGNAL_IN_WRITE = """
import atexit, os, signal, sys
from sqlalchemy import event
from sqlalchemy.orm import Session
target, seen = int(sys.argv[1]), [0]

@event.listens_for(Session, "after_flush_postexec")
def signal_mid_write(session, context):
    seen[0] += 1
    if seen[0] == target:
        os.kill(os.getpid(), signal.SIGTERM)

atexit.register(lambda: print(f"store writes: {seen[0]}", file=sys.stderr))
sys.argv = ["vzexp", *sys.argv[2:]]
from vzexp.__main__ import main
main()
"""


def test_sigterm_during_store_writes_is_acted_on_once_the_write_is_done(tmp_path, cli_env):
    """SIGTERM inside every other one of a run's MLflow writes (opening the store, creating the
    run, its params, the evaluation's params, input and metrics), and inside the last: the write
    completes, then the run stops as for any signal. The store is opened and the run created
    with signals held, so a signal there finds the run open and ends it KILLED with its params;
    one inside the very write that ends the run FINISHED leaves it FINISHED (its work was all
    done). Never a traceback, never RUNNING."""

    def launch(k: int) -> tuple[subprocess.Popen, dict[str, str]]:
        cwd = tmp_path / f"write{k}"
        cwd.mkdir()
        env = {**cli_env, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"}
        args = [str(k), *FAST, "task.overlays=0"]
        proc = subprocess.Popen(
            [sys.executable, "-c", SIGNAL_IN_WRITE, *args],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return proc, env

    proc, _ = launch(0)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    writes = int(stderr.rsplit("store writes: ", 1)[1].split()[0])
    assert writes >= 8  # the store, the run and its end, params, input, metrics
    points = sorted({*range(1, writes, 2), writes})
    for pair in (points[i : i + 2] for i in range(0, len(points), 2)):  # two processes at once
        for k, proc, env in [(k, *launch(k)) for k in pair]:
            _, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 143, (k, stderr[-3000:])
            assert "Traceback" not in stderr, (k, stderr[-3000:])
            [line] = vzexp_lines(stderr)
            assert "stopped by SIGTERM" in line, (k, line)
            [run] = runs(env)
            assert run.info.status == ("FINISHED" if k == writes else "KILLED"), k
            assert run.data.params and PROCESS_TAG in run.data.tags, k  # written whole
            if k < writes:
                assert run.data.tags["vzexp.error"].startswith("Interrupted"), k


def test_ending_a_run_waits_out_a_locked_store(tmp_path, monkeypatch):
    """A store locked by another writer when the run ends (MLflow gives up after its busy
    timeout): the end is tried again until it is written, and the run does not stay RUNNING."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from vzexp import interrupt, tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setattr(tracking, "LOCKED_WAIT_SECONDS", 5.0)
    real = MlflowClient.set_terminated
    refusals = []

    def locked_twice(self, run_id, *args, **kwargs):
        if len(refusals) < 2:
            refusals.append(run_id)
            raise MlflowException("(sqlite3.OperationalError) database is locked")
        return real(self, run_id, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "set_terminated", locked_twice)
    with pytest.raises(interrupt.Interrupted):
        with tracking.tracked_run(True, {"a": 1}, "vzexp", "locked", uri) as tracker:
            raise interrupt.Interrupted(signal.SIGTERM)
    assert len(refusals) == 2
    run = MlflowClient(uri).get_run(tracker.info.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["vzexp.error"].startswith("Interrupted")
    # a lock that outlasts the wait: the failure is reported, the run left for the next one
    refusals.clear()
    monkeypatch.setattr(tracking, "LOCKED_WAIT_SECONDS", 0.0)
    with pytest.raises(tracking.StoreError, match="could not be ended FINISHED"):
        with tracking.tracked_run(True, {"a": 1}, "vzexp", "locked", uri):
            pass


# ---- concurrent first runs -------------------------------------------------------------------


def test_three_first_runs_at_once_on_a_fresh_store_all_finish(tmp_path, cli_env):
    procs = []
    for k in range(3):
        cwd = tmp_path / str(k)
        cwd.mkdir()
        procs.append(start([*FAST, "task.overlays=0"], cli_env, cwd))
    for proc in procs:
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
        assert "Traceback" not in stderr
    assert statuses(cli_env) == ["FINISHED"] * 3


# ---- stale or wrong results ------------------------------------------------------------------


def llava_pope(root: Path, labels=("yes", "no", "no", "yes"), rows=None) -> list[str]:
    """A POPE benchmark in LLaVA's layout: questions, one label file, an image per question."""
    (root / "val2014").mkdir(parents=True, exist_ok=True)
    rows = (
        rows
        if rows is not None
        else [
            {"question_id": k, "image": f"{k}.png", "text": "Is there a dog?", "category": "random"}
            for k in range(len(labels))
        ]
    )
    for k in range(len(labels)):
        if not (root / "val2014" / f"{k}.png").exists():
            picture(k).save(root / "val2014" / f"{k}.png")
    questions = root / "llava_pope_test.jsonl"
    questions.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    (root / "coco").mkdir(exist_ok=True)
    answers = [{"question_id": k, "label": v} for k, v in enumerate(labels)]
    (root / "coco" / "coco_pope_random.json").write_text(
        "".join(json.dumps(a) + "\n" for a in answers)
    )
    return ["data=pope", f"data.root={root}", "data.dataset.layout=llava"]


def test_the_data_digest_follows_questions_and_images_not_answers(tmp_path):
    from vzexp.data.benchmarks.pope import POPE
    from vzexp.tasks.common import data_digest

    llava_pope(tmp_path)
    first = data_digest(POPE(str(tmp_path), layout="llava"))
    llava_pope(tmp_path, labels=("no", "no", "no", "no"))  # gold answers fixed
    assert data_digest(POPE(str(tmp_path), layout="llava")) == first
    picture(9).save(tmp_path / "val2014" / "2.png")  # an image replaced
    assert data_digest(POPE(str(tmp_path), layout="llava")) != first


def rewrite_column(root: Path, column: str, change) -> None:
    """`change` applied to row 0's `column` in the parquet files under root that have it,
    rewritten in place (their schema, and so their `datasets` features, kept)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in sorted(root.rglob("*.parquet")):
        table = pq.read_table(path)
        if column not in table.column_names:
            continue
        values = table.column(column).to_pylist()
        values[0] = change(values[0])
        k = table.column_names.index(column)
        field = table.schema.field(k)
        pq.write_table(table.set_column(k, field, pa.array(values, type=field.type)), path)


def changed_answer(value):
    if isinstance(value, list):  # VQAv2's annotator answers
        return [*value, "fixed"]
    if isinstance(value, int):  # ScienceQA's index into the choices
        return value ^ 1
    return chr(ord(value) + 1) if len(value) == 1 else f"{value} fixed"  # a letter, or a word


def changed_image(value):
    png = io.BytesIO()
    picture(99).save(png, format="PNG")
    if isinstance(value, list):  # SEED-Bench: a list of images
        return [changed_image(value[0]), *value[1:]]
    return {**value, "bytes": png.getvalue()}


@pytest.mark.parametrize("name", real_benchmarks())
def test_the_parquet_digest_follows_questions_and_images_not_answers(tmp_path, name):
    """lmms-eval's layout holds answers, questions and images in the same files: the digest in
    the predictions key covers the columns the reader names as deciding a prediction only."""
    from benchmark_fixtures import fixtures
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from vzexp.list import source
    from vzexp.tasks.common import data_digest

    root = fixtures(tmp_path)[name]
    config = OmegaConf.create(source("data", name))
    reader = get_class(config.dataset["_target_"])
    # a server-scored split (no gold answers) is read as its config names its files
    server = config.get("name") in ("vqav2_testdev", "mmbench_test")
    kwargs = {"split": config.dataset["split"]} if server else {}
    first = data_digest(reader(str(root), **kwargs))
    if not server:
        answers = "answers" if name in ("vqav2", "textvqa") else "answer"
        rewrite_column(root, answers, changed_answer)
        assert data_digest(reader(str(root), **kwargs)) == first  # a gold answer fixed
    rewrite_column(root, "question", lambda q: f"{q} Really?")
    second = data_digest(reader(str(root), **kwargs))
    assert second != first  # a question changed
    image = "image_1" if name == "mmmu" else "image"
    rewrite_column(root, image, changed_image)
    assert data_digest(reader(str(root), **kwargs)) != second  # an image replaced


def test_a_parquet_answer_fix_rescores_and_a_question_change_predicts_again(tmp_path, cli_env):
    from benchmark_fixtures import write

    root = tmp_path / "pope"
    columns = {
        "question_id": ["1", "2", "3", "4"],
        "question": ["Is there a dog in the image?"] * 4,
        "answer": ["yes", "no", "no", "yes"],
        "category": ["random"] * 4,
        "image": [picture(k) for k in range(4)],
    }
    write(root, columns)
    args = ["data=pope", f"data.root={root}", "model=tiny_random", "task.max_new_tokens=1"]
    args.append("task.overlays=0")
    first = run_cli(args, cli_env, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    (path,) = (tmp_path / "predictions").glob("*.jsonl")
    before = [json.loads(x)["prediction"] for x in path.read_text().splitlines()]
    write(root, {**columns, "answer": ["no", "yes", "yes", "no"]})  # every gold answer fixed
    second = run_cli(args, cli_env, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "4 of 4 samples already done" in second.stdout + second.stderr
    assert [p.name for p in (tmp_path / "predictions").glob("*.jsonl")] == [path.name]
    assert [json.loads(x)["prediction"] for x in path.read_text().splitlines()] == before
    old, new = sorted(runs(cli_env), key=lambda r: r.info.start_time)
    assert new.data.metrics["accuracy"] == pytest.approx(1 - old.data.metrics["accuracy"])
    questions = ["Is there a cat in the image?", *columns["question"][1:]]
    write(root, {**columns, "question": questions})  # a question changed: predicted anew
    third = run_cli(args, cli_env, tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "already done" not in third.stdout + third.stderr
    assert len(list((tmp_path / "predictions").glob("*.jsonl"))) == 2


def test_fixed_gold_answers_rescore_without_predicting_again_and_score_checks(tmp_path, cli_env):
    data = llava_pope(tmp_path / "pope")
    args = [*data, "model=tiny_random", "task.max_new_tokens=1", "task.overlays=0"]
    first = run_cli(args, cli_env, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    (path,) = (tmp_path / "predictions").glob("*.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert {r["data"] for r in records} == {"pope"}
    before = path.read_text()
    # every answer flipped: a scorer that re-reads them must report 1 - the first accuracy
    llava_pope(tmp_path / "pope", labels=("no", "yes", "yes", "no"))
    second = run_cli(args, cli_env, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "4 of 4 samples already done" in second.stdout + second.stderr
    assert [p.name for p in (tmp_path / "predictions").glob("*.jsonl")] == [path.name]
    assert [json.loads(x)["prediction"] for x in path.read_text().splitlines()] == [
        json.loads(x)["prediction"] for x in before.splitlines()
    ]
    old, new = sorted(runs(cli_env), key=lambda r: r.info.start_time)
    assert new.data.metrics["accuracy"] == pytest.approx(1 - old.data.metrics["accuracy"])
    # task=score reads the gold answers of the benchmark too, and checks the file against it
    scored = run_cli(["task=score", f"task.predictions={path}", *data], cli_env, tmp_path)
    assert scored.returncode == 0, scored.stderr[-3000:]
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(path.read_text().splitlines(keepends=True)[:3]))
    refused = run_cli(["task=score", f"task.predictions={cut}", *data], cli_env, tmp_path)
    assert refused.returncode == 2
    [line] = vzexp_lines(refused.stderr)
    assert "predictions for 3 of the 4 samples" in line and "task.allow_partial=true" in line
    partial = ["task=score", f"task.predictions={cut}", "task.allow_partial=true", *data]
    allowed = run_cli(partial, cli_env, tmp_path)
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert "partial: 3 of 4 samples scored" in allowed.stdout
    found = sorted(runs(cli_env), key=lambda r: r.info.start_time)
    assert [r.info.status for r in found] == ["FINISHED"] * 4
    assert found[-2].data.metrics["accuracy"] == new.data.metrics["accuracy"]
    assert found[-1].data.metrics["samples"] == 3


def test_fixed_dialogue_answers_rescore_every_turn_without_predicting_again(tmp_path, cli_env):
    tests = Path(__file__).resolve().parents[1]  # dialogue_fixtures, for the subprocess
    env = {**cli_env, "PYTHONPATH": os.pathsep.join([str(tests), cli_env["PYTHONPATH"]])}
    answers = tmp_path / "answers.json"
    args = [
        "data=shapes_dialogue",
        "data.limit=3",
        "data.dataset.turns=3",
        "task.max_new_tokens=2",
        "data.dataset._target_=dialogue_fixtures.DialoguesWithAnswers",
        f"+data.dataset.answers={answers}",
    ]
    first = run_cli(args, env, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    (path,) = (tmp_path / "predictions").glob("*.jsonl")
    predicted = [json.loads(line) for line in path.read_text().splitlines()]
    # the gold answers fixed: each first turn's answer is what was predicted, the later ones a
    # word never predicted, so a re-scored run reports the share of first turns
    fixed = {
        r["id"]: [t["prediction"] if k == 0 else "never" for k, t in enumerate(r["turns"])]
        for r in predicted
    }
    answers.write_text(json.dumps(fixed))
    turns = [k for r in predicted for k in range(len(r["turns"]))]
    expected = turns.count(0) / len(turns)
    second = run_cli(args, env, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "3 of 3 samples already done" in second.stdout + second.stderr
    assert [p.name for p in (tmp_path / "predictions").glob("*.jsonl")] == [path.name]
    again = [json.loads(line) for line in path.read_text().splitlines()]
    assert [[t["prediction"] for t in r["turns"]] for r in again] == [
        [t["prediction"] for t in r["turns"]] for r in predicted
    ]
    old, new = sorted(runs(cli_env), key=lambda r: r.info.start_time)
    assert new.data.metrics["samples"] == len(turns)
    assert new.data.metrics["accuracy"] == pytest.approx(expected)
    assert old.data.metrics["accuracy"] != pytest.approx(expected)
    scored = sorted(tmp_path.glob("outputs/*/*/predictions.jsonl"))[-1]  # the second run's
    for record in (json.loads(line) for line in scored.read_text().splitlines()):
        assert [t["answer"] for t in record["turns"]] == fixed[record["id"]]
        assert [t["correct"] for t in record["turns"]] == [
            float(k == 0) for k in range(len(record["turns"]))
        ]
    # task=score re-scores a dialogue file against the fixed answers too
    data = [a for a in args if not a.startswith("task.")]
    score = run_cli(["task=score", f"task.predictions={path}", *data], env, tmp_path)
    assert score.returncode == 0, score.stderr[-3000:]
    assert sorted(runs(cli_env), key=lambda r: r.info.start_time)[-1].data.metrics[
        "accuracy"
    ] == pytest.approx(expected)


# ---- one line, exit 2, before any model loads: nothing written, no run left ------------------


def shapes_records(tmp_path, count=2, **extra) -> str:
    path = tmp_path / "shapes.jsonl"
    rows = [
        {"id": f"shapes-test-{k:05d}", "prediction": "red", "answer": "red", **extra}
        for k in range(count)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def score(tmp_path, text: str, *more: str) -> list[str]:
    path = tmp_path / "given.jsonl"
    path.write_text(text)
    return ["task=score", f"task.predictions={path}", *more]


def corrupt_store(tmp_path):
    (tmp_path / "bad.db").write_bytes(b"this is not a database" * 50)
    return [f"logger.tracking_uri=sqlite:///{tmp_path / 'bad.db'}"]


def pope_rows(rows):
    return lambda tmp_path: llava_pope(tmp_path / "pope", labels=("yes",) * 2, rows=rows)


def vqav2_without_answers(tmp_path):
    root = tmp_path / "vqav2"
    (root / "images").mkdir(parents=True)
    picture(0).save(root / "images" / "a.png")
    (root / "questions.jsonl").write_text(json.dumps({**GOOD, "image": "a.png"}) + "\n")
    (root / "annotations.jsonl").write_text(json.dumps({"question_id": 1}) + "\n")
    return ["data=vqav2", f"data.root={root}", "data.dataset.layout=llava"]


def answers_without_ids(tmp_path):
    args = llava_pope(tmp_path / "pope", labels=("yes",))
    (tmp_path / "pope" / "answers.jsonl").write_text(json.dumps({"label": "yes"}) + "\n")
    return [*args, "data.dataset.annotations=answers.jsonl"]


GOOD = {"question_id": 1, "image": "1.png", "text": "Is there a dog?", "category": "random"}
ONE_LINE = {
    "non-ASCII digits": (["tokens=٣"], "'tokens=٣' cannot be read as an override: quote"),
    "unquoted emoji": (["logger.run_name=🙂"], "write numbers with ASCII digits"),
    "negative seed": (["seed=-1"], "seed=-1 is not allowed: an integer in 0..4294967295"),
    "seed beyond 2^32-1": (["seed=4294967296"], "seed=4294967296 is not allowed"),
    "5,000-character experiment name": (
        ["logger.experiment_name=" + "x" * 5000],
        "logger.experiment_name='xxxx",
    ),
    "300-character run name": (["logger.run_name=" + "r" * 300], "1..250 characters (300"),
    "predictions dir /dev/null": (
        ["task.predictions_dir=/dev/null"],
        "task.predictions_dir='/dev/null': cannot create the predictions directory",
    ),
    "file: tracking URI": (
        ["logger.tracking_uri=file:./mlruns"],
        "MLflow no longer writes file stores",
    ),
    "path without a scheme as tracking URI": (
        ["logger.tracking_uri=./mlruns"],
        "MLflow no longer writes file stores",
    ),
    "unknown tracking URI scheme": (
        ["logger.tracking_uri=ftp://host/store"],
        "a URI with one of the schemes sqlite",
    ),
    "corrupt store": (corrupt_store, "is not an SQLite database; move it away (mv"),
    "store in a read-only directory": (
        ["logger.tracking_uri=sqlite:////sys/vzexp/mlflow.db"],
        "cannot create the MLflow database there",
    ),
    "split=validation": (["data.dataset.split=validation"], "data.dataset.split='validation'"),
    "size=0": (["data.dataset.size=0"], "data.dataset.size=0 is not allowed"),
    "image_size=7": (["data.dataset.image_size=7"], "data.dataset.image_size=7 is not allowed"),
    "question without text": (
        pope_rows([{k: v for k, v in GOOD.items() if k != "text"}]),
        "llava_pope_test.jsonl': record 1 is not a question (no 'text')",
    ),
    "question with image null": (
        pope_rows([{**GOOD, "question_id": 0, "image": "0.png"}, {**GOOD, "image": None}]),
        "record 2 is not a question (image=None, not a string)",
    ),
    "question file with a JSON array line": (
        pope_rows(['[{"question_id": 1}]']),
        "record 1 is not a question (a JSON list, not an object)",
    ),
    "duplicate question ids": (
        pope_rows([GOOD, {**GOOD, "text": "Is there a cat?"}]),
        "data=pope: 1 sample id(s) repeated, e.g. '1' (2 times); one sample per id",
    ),
    "VQAv2 annotations without answers": (
        vqav2_without_answers,
        "sample '1' cannot be scored by data.scorer=vzexp.data.benchmarks.vqav2.scorer (\"record '1' has no 'answers'",
    ),
    "answer records without question_id": (
        answers_without_ids,
        "data=pope: a record of its files could not be read (KeyError: 'question_id'); check",
    ),
    "empty questions file": (pope_rows([]), "data=pope: the benchmark has no samples"),
    "score: another benchmark's file": (
        lambda tmp_path: (
            ["task=score", f"task.predictions={shapes_records(tmp_path)}"]
            + llava_pope(tmp_path / "pope", labels=("yes",) * 2)
        ),
        "2 of its 2 records are not samples of data=pope, e.g. id 'shapes-test-00000'",
    ),
    "score: a file that names another benchmark": (
        lambda tmp_path: [
            "task=score",
            f"task.predictions={shapes_records(tmp_path, data='pope')}",
            "data.limit=2",
        ],
        "made on data=pope; score it with the data config it was made with",
    ),
    "score: a truncated file": (
        lambda tmp_path: ["task=score", f"task.predictions={shapes_records(tmp_path, 1)}"],
        "predictions for 1 of the 2 samples data=shapes evaluates (data.limit=2)",
    ),
    "score: records without prediction": (
        lambda tmp_path: score(tmp_path, '{"id": "shapes-test-00000", "answer": "red"}\n'),
        "line 1 (id 'shapes-test-00000') has no 'prediction'",
    ),
    "score: records of another program": (
        lambda tmp_path: ["task=score", f"task.predictions={shapes_records(tmp_path)}"],
        "its records have no 'visual_tokens'; is this a predictions file of python -m vzexp?",
    ),
    "score: a JSON array line": (
        lambda tmp_path: score(tmp_path, '[1, 2]\n{"id": "x"}\n'),
        "line 1 is not a prediction record (no 'id')",
    ),
    "score: not JSON": (
        lambda tmp_path: score(tmp_path, "id,prediction\nshapes-test-00000,red\n"),
        "line 1 is not JSON; is this a predictions file?",
    ),
    "score: repeated ids": (
        lambda tmp_path: score(
            tmp_path,
            '{"id": "shapes-test-00000", "prediction": "red"}\n' * 2,
            "data.limit=2",
        ),
        "line 2 repeats id 'shapes-test-00000' (line 1)",
    ),
}


def run_in_process(args, env, cwd, monkeypatch, capfd) -> tuple[int, str]:
    """`python -m vzexp ARGS` in this process (the libraries are imported once, not per case):
    its exit code and stderr. The signal handlers it installs are restored afterwards."""
    import os

    from vzexp.__main__ import main

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["vzexp", *args])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    return code, capfd.readouterr().err


@pytest.mark.parametrize("case", list(ONE_LINE))
def test_refused_in_one_line_before_any_model_loads(tmp_path, cli_env, case, monkeypatch, capfd):
    args, needle = ONE_LINE[case]
    args = args(tmp_path) if callable(args) else args
    code, stderr = run_in_process(["data.limit=2", *args], cli_env, tmp_path, monkeypatch, capfd)
    assert code == 2, stderr[-2000:]
    assert "Traceback" not in stderr
    [line] = vzexp_lines(stderr)
    assert line.startswith("vzexp: error:") and needle in line, line
    assert "Loading weights" not in stderr  # refused before any model loaded
    assert not (tmp_path / "predictions").exists()  # nothing predicted
    assert runs(cli_env) == []  # and no MLflow run opened, so none is left RUNNING


# ---- runs left RUNNING by a dead process ---------------------------------------------------------


def test_runs_of_dead_processes_are_ended_killed_and_live_ones_kept(tmp_path):
    from vzexp.tracking import PROCESS_TAG, end_orphans, open_store, process_identity

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid names no process now
    client, experiment = open_store(f"sqlite:///{tmp_path / 'mlflow.db'}", "vzexp")
    tags = {
        "dead job": {PROCESS_TAG: process_identity(dead.pid)},
        "dead sweep parent": {PROCESS_TAG: f"{process_identity().rsplit(':', 2)[0]}:{dead.pid}:"},
        "live job": {PROCESS_TAG: process_identity()},
        "reused pid": {PROCESS_TAG: f"{process_identity().rsplit(':', 1)[0]}:1"},
        "other machine": {PROCESS_TAG: f"elsewhere:{dead.pid}:1"},
        "untagged": {},
    }
    ids = {name: client.create_run(experiment, tags=t).info.run_id for name, t in tags.items()}
    ended = end_orphans(client, experiment)
    assert sorted(ended) == sorted(ids[n] for n in ("dead job", "dead sweep parent", "reused pid"))
    status = {name: client.get_run(i).info.status for name, i in ids.items()}
    assert status == {
        "dead job": "KILLED",
        "dead sweep parent": "KILLED",
        "live job": "RUNNING",
        "reused pid": "KILLED",  # this process's pid with another start time
        "other machine": "RUNNING",  # cannot be checked from here
        "untagged": "RUNNING",
    }
