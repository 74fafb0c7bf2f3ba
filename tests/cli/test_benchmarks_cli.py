"""Every real benchmark through the CLI on its fixture copy (tests/integration/test_benchmarks.py):
one sweep, one FINISHED MLflow run per benchmark with its metrics and predictions (the splits
without answers: no score, the submission file for their server); a corrupt image
stops the run with one line, exit 2, the run FAILED and the predictions so far kept on disk."""

from __future__ import annotations

import json
import os

import numpy as np
from benchmark_fixtures import fixtures, picture, real_benchmarks
from mlflow.tracking import MlflowClient
from PIL import Image
from vzexp_testing import run_cli

from vzexp.tracking import is_sweep_parent

NAMES = real_benchmarks()
# the splits without answers and the file each run writes for its server
SERVER_SCORED = {"vqav2_testdev": "submission.json", "mmbench_test": "submission.xlsx"}
SMALL = ["model=tiny_random", "data.batch_size=2", "task.max_new_tokens=2"]


def runs(env, name="vzexp"):
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    found = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    return client, [r for r in found if not is_sweep_parent(r)]


def test_every_benchmark_reads_scores_and_logs(tmp_path, cli_env):
    roots = fixtures(tmp_path / "data")
    assert sorted(roots) == NAMES  # every benchmark has its fixture copy
    # one folder per data= option, as a user's data.root=DIR/${data.name} names them (the
    # fixtures use LLaVA's folder names, e.g. MME/ for data=mme)
    for name, folder in roots.items():
        if folder.name != name:
            (tmp_path / "data" / name).symlink_to(folder.name)
    root = f"data.root={tmp_path / 'data'}/${{data.name}}"
    proc = run_cli(["-m", f"data={','.join(NAMES)}", root, *SMALL], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client, found = runs(cli_env)
    assert sorted(r.data.params["data.name"] for r in found) == sorted(NAMES)
    for r in found:
        name, tags = r.data.params["data.name"], r.data.tags
        assert r.info.status == "FINISHED"
        assert r.data.metrics["samples"] >= 1
        artifacts = [a.path for a in client.list_artifacts(r.info.run_id)]
        assert "predictions.jsonl" in artifacts, artifacts
        if name in SERVER_SCORED:  # no answers: no score, the server's file
            assert "accuracy" not in r.data.metrics and SERVER_SCORED[name] in artifacts
            assert tags["vzexp.scored"].startswith("none: no gold answers; submit submission.")
        else:
            assert "accuracy" in r.data.metrics
            assert tags["vzexp.scored"] == f"here: data.scorer={r.data.params['data.scorer']}"
    by_name = {r.data.params["data.name"]: r.data.metrics for r in found}
    assert "split_mean/f1" in by_name["pope"] and "perception" in by_name["mme"]
    assert by_name["mmbench"]["samples"] == 5  # 3 + 2 rotations
    assert by_name["mmbench_test"]["samples"] == 2  # its 2 rows, each asked once
    # EvalAI's file: every question id of the whole test set, test-dev's answered
    (testdev,) = [r for r in found if r.data.params["data.name"] == "vqav2_testdev"]
    local = client.download_artifacts(testdev.info.run_id, "submission.json", str(tmp_path))
    uploaded = json.loads(open(local).read())
    assert [row["question_id"] for row in uploaded] == [19, 20, 21, 22]
    assert uploaded[0]["answer"] == uploaded[3]["answer"] == ""


def pope_with_a_bad_image(tmp_path, bad: int, content: bytes) -> list[str]:
    """Three POPE samples in LLaVA's layout whose image `bad` holds `content`; the CLI args."""
    data = tmp_path / "pope"
    (data / "images").mkdir(parents=True)
    for k in range(3):
        Image.fromarray(np.full((20, 20, 3), 40 * k, dtype=np.uint8)).save(
            data / "images" / f"{k}.png"
        )
    (data / "images" / f"{bad}.png").write_bytes(content)
    rows = [
        {"question_id": k, "image": f"{k}.png", "text": "Is it red?", "category": "random"}
        for k in range(3)
    ]
    (data / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    labels = [{"question_id": k, "label": "no"} for k in range(3)]
    (data / "annotations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in labels))
    args = ["data=pope", f"data.root={data}", "data.dataset.layout=llava", "model=tiny_random"]
    args += ["data.dataset.questions=questions.jsonl", "data.dataset.annotations=annotations.jsonl"]
    return [*args, "data.dataset.images=images"]


def test_a_corrupt_image_fails_cleanly_and_keeps_predictions(tmp_path, cli_env):
    args = pope_with_a_bad_image(tmp_path, bad=2, content=b"garbage")
    proc = run_cli([*args, "data.batch_size=1"], cli_env, tmp_path)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith("vzexp: error: data: the image of sample '2' could not be read")
    )
    (part,) = (tmp_path / "predictions").glob("*.part")
    assert [json.loads(line)["id"] for line in part.read_text().splitlines()] == ["0", "1"]
    _, found = runs(cli_env)
    assert [r.info.status for r in found] == ["FAILED"]


def test_on_bad_image_skip_records_counts_and_scores_the_rest(tmp_path, cli_env):
    args = pope_with_a_bad_image(tmp_path, bad=1, content=b"\x89PNG truncated")
    proc = run_cli([*args, "data.on_bad_image=skip", "data.batch_size=2"], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, [run] = runs(cli_env)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["skipped_samples"] == 1 and run.data.metrics["samples"] == 2
    (path,) = tmp_path.glob("outputs/*/*/predictions.jsonl")
    records = {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}
    assert set(records) == {"0", "1", "2"}  # the skipped sample is recorded, not dropped
    assert "could not be read" in records["1"]["skipped"]
    assert not records["0"].get("skipped") and not records["2"].get("skipped")

    # the image fixed, a rerun predicts the skipped sample and keeps the two already done
    Image.fromarray(np.full((20, 20, 3), 40, dtype=np.uint8)).save(
        tmp_path / "pope" / "images" / "1.png"
    )
    proc = run_cli([*args, "data.on_bad_image=skip", "data.batch_size=2"], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, found = runs(cli_env)
    latest = max(found, key=lambda r: r.info.start_time)
    assert latest.data.metrics["samples"] == 3 and "skipped_samples" not in latest.data.metrics


def test_score_task_rescores_scienceqa_with_llavas_rule(tmp_path, cli_env):
    # eval_science_qa.py reads "The answer is A." but not a sentence with nothing after the
    # letter, which a more lenient rule accepted: re-scoring an old file applies the upstream
    # rule to it, against the benchmark's own gold answers (A for sample 0, B for sample 1)
    root = fixtures(tmp_path / "data")["scienceqa"]
    outputs = ["The answer is A.", "The answer is B"]
    records = [
        {"id": str(k), "prediction": output, "answer": "", "visual_tokens": 4}
        for k, output in enumerate(outputs)
    ]
    path = tmp_path / "old_predictions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    args = ["task=score", "data=scienceqa", f"data.root={root}", f"task.predictions={path}"]
    proc = run_cli([*args, "logger=none"], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rescored,) = tmp_path.rglob("predictions.rescored.jsonl")
    scored = [json.loads(line) for line in rescored.read_text().splitlines()]
    assert [(r["answer"], r["correct"]) for r in scored] == [("A", 1.0), ("B", 0.0)]
    assert any(
        line.split() == ["|", "accuracy", "|", "0.5", "|"] for line in proc.stdout.splitlines()
    )


def test_vqav2_test_dev_in_llavas_layout_writes_the_evalai_file(tmp_path, cli_env):
    # LLaVA's playground/data/eval/vqav2: test-dev's questions, the test2015 images and the
    # question file of the whole test set, under paths.eval_root
    root = tmp_path / "eval" / "vqav2"
    (root / "test2015").mkdir(parents=True)
    rows = [{"question_id": k, "image": f"{k}.jpg", "text": "What is it?"} for k in (5, 6)]
    for row in rows:
        picture(row["question_id"]).save(root / "test2015" / row["image"])
    (root / "llava_vqav2_mscoco_test-dev2015.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows)
    )
    (root / "llava_vqav2_mscoco_test2015.jsonl").write_text(
        "".join(json.dumps({"question_id": k}) + "\n" for k in (4, 5, 6, 7))
    )
    args = ["data=vqav2_testdev", f"paths.eval_root={tmp_path / 'eval'}"]
    args += ["data.dataset.layout=llava", *SMALL]
    proc = run_cli(args, cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = "scored: none: no gold answers; submit submission.json to EvalAI (VQAv2 test-dev)"
    assert said in proc.stdout
    (predictions,) = tmp_path.glob("outputs/*/*/predictions.jsonl")
    uploaded = json.loads((predictions.parent / "submission.json").read_text())
    assert [row["question_id"] for row in uploaded] == [4, 5, 6, 7]
    assert uploaded[0]["answer"] == uploaded[3]["answer"] == ""
    client, [run] = runs(cli_env)
    assert "accuracy" not in run.data.metrics and run.data.metrics["samples"] == 2
    assert "submission.json" in [a.path for a in client.list_artifacts(run.info.run_id)]

    # task=score on its predictions, no model: the same file again
    again = [*args[:3], "task=score", f"task.predictions={predictions}", "logger=none"]
    proc = run_cli(again, cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rescored,) = tmp_path.glob("outputs/*/*/predictions.rescored.jsonl")
    assert json.loads((rescored.parent / "submission.json").read_text()) == uploaded

    # without a file to write for the server, a split without answers is refused before the
    # model loads
    proc = run_cli([*args, "data.submission=null"], cli_env, tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "vzexp: error: data=vqav2_testdev: no sample has a gold answer (a split its server "
        "scores) and data.submission=null names no file for the server: nothing to score or submit"
    )


DUMMY_MODULE = '''
"""A benchmark added from outside vzexp: its reader and its scorer in one module."""

from PIL import Image
from torch.utils.data import Dataset

from vzexp.data.sample import Sample
from vzexp.data.scoring import Scorer


class Squares(Dataset):
    def __init__(self, size):
        self.size = size

    def __len__(self):
        return self.size

    def __getitem__(self, i):
        image = Image.new("RGB", (32, 32), (200, 30, 30))
        return Sample(id=f"sq-{i}", image=image, question="What color?", answer="red")


def sample(record):
    return float(record["answer"] == "red")  # every sample right, whatever the model says


def metrics(records):
    return {"squares_scored": float(len(records)), "squares_marker": 7.0}


scorer = Scorer("squares", sample, metrics)
'''

DUMMY_YAML = """name: squares
dataset:
  _target_: squares_bench.Squares
  size: 3
batch_size: 3
scorer: squares_bench.scorer
"""


def test_a_benchmark_is_one_module_and_one_yaml(tmp_path, cli_env):
    plugin, conf = tmp_path / "plugin", tmp_path / "myconf" / "data"
    plugin.mkdir()
    conf.mkdir(parents=True)
    (plugin / "squares_bench.py").write_text(DUMMY_MODULE)
    (conf / "squares.yaml").write_text(DUMMY_YAML)
    env = {**cli_env, "PYTHONPATH": f"{plugin}{os.pathsep}{cli_env['PYTHONPATH']}"}
    args = [f"hydra.searchpath=[file://{tmp_path / 'myconf'}]", "data=squares", "logger=none"]
    proc = run_cli([*args, "model=tiny_random", "task.max_new_tokens=2"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = {
        cells[0]: cells[1]
        for line in proc.stdout.splitlines()
        if len(cells := [c.strip() for c in line.strip("|").split("|")]) == 2
    }
    assert table["data"] == "squares"
    assert (table["squares_scored"], table["squares_marker"]) == ("3", "7")
    assert table["accuracy"] == "1"  # the module's per-sample score (a random model's outputs
    # do not match "red" exactly)
    (predictions,) = tmp_path.rglob("predictions.jsonl")
    lines = predictions.read_text().splitlines()
    assert [json.loads(line)["correct"] for line in lines] == [1.0, 1.0, 1.0]
