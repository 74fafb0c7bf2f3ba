"""The submission files of the server-scored splits, against the formats of LLaVA's scripts
(haotian-liu/LLaVA scripts/convert_vqav2_for_submission.py and convert_mmbench_for_submission.py):
VQAv2 test-dev's JSON for EvalAI and MMBench test's .xlsx for OpenCompass, from the benchmarks'
fixture files in both layouts; and the split known as server-scored by its missing answers."""

from __future__ import annotations

import base64
import importlib.util
import io
import json

import pandas as pd
import pytest
from benchmark_fixtures import fixtures, picture

from vzexp.data.benchmarks import mmbench, vqav2
from vzexp.data.benchmarks.common import SHORT
from vzexp.data.scoring import submission_for
from vzexp.data.submission import UNSCORED, server_scored
from vzexp.engine.eval_loop import scorer_of
from vzexp.engine.evaluate import summarize
from vzexp.errors import ConfigError


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return fixtures(tmp_path_factory.mktemp("benchmarks"))


def records(dataset, predictions: dict[str, str]) -> list[dict]:
    return [
        {"id": item["id"], "prediction": predictions[item["id"]], "answer": item["answer"]}
        for item in dataset.items
        if item["id"] in predictions
    ]


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_vqav2_testdev_parquet_lists_every_test_question_with_evalai_answers(roots, tmp_path):
    ds = vqav2.VQAv2(str(roots["vqav2_testdev"]), split="testdev")
    assert [item["id"] for item in ds.items] == ["20", "21"]  # test-dev's rows only
    assert ds.items[0]["question"] == f"What is it?\n{SHORT}" and ds.items[0]["answer"] is None
    assert server_scored(ds) and not server_scored(vqav2.VQAv2(str(roots["vqav2"])))
    out = tmp_path / "submission.json"
    vqav2.submission.write(records(ds, {"20": " A Dog.", "21": "Two"}), ds, out)
    # every question id of the test split file, in its order; EvalAI's answer processing
    # ("A" is an article, "Two" a number word); "" where the run has no answer
    assert json.loads(out.read_text()) == [
        {"question_id": 19, "answer": ""},
        {"question_id": 20, "answer": "dog"},
        {"question_id": 21, "answer": "2"},
        {"question_id": 22, "answer": ""},
    ]


def test_vqav2_testdev_llava_layout_reads_llava_test2015_question_ids(tmp_path):
    (tmp_path / "test2015").mkdir()
    picture(0).save(tmp_path / "test2015" / "a.jpg")
    asked = [{"question_id": 5, "image": "a.jpg", "text": f"What is it?\n{SHORT}"}]
    jsonl(tmp_path / "llava_vqav2_mscoco_test-dev2015.jsonl", asked)
    jsonl(tmp_path / "llava_vqav2_mscoco_test2015.jsonl", [{"question_id": q} for q in (4, 5, 6)])
    files = {"questions": "llava_vqav2_mscoco_test-dev2015.jsonl", "images": "test2015"}
    ds = vqav2.VQAv2(str(tmp_path), layout="llava", annotations="", **files)
    assert server_scored(ds) and ds[0].question == f"What is it?\n{SHORT}"
    out = tmp_path / "submission.json"
    vqav2.submission.write(records(ds, {"5": "Yes, it's a man's hat."}), ds, out)
    assert json.loads(out.read_text()) == [
        {"question_id": 4, "answer": ""},
        {"question_id": 5, "answer": "yes it 's man 's hat"},  # EvalAIAnswerProcessor's output
        {"question_id": 6, "answer": ""},
    ]
    # without the whole test set's file: the split's own questions
    (tmp_path / "llava_vqav2_mscoco_test2015.jsonl").unlink()
    vqav2.submission.write([], ds, out)
    assert json.loads(out.read_text()) == [{"question_id": 5, "answer": ""}]


def mmbench_tsv(path, rows: list[dict]) -> None:
    buffer = io.BytesIO()
    picture(0).save(buffer, format="PNG")
    image = base64.b64encode(buffer.getvalue()).decode()
    table = pd.DataFrame([{**row, "image": image} for row in rows])
    table.to_csv(path, sep="\t", index=False)


# MMBench's test TSV: no answer column; 1000003 is the rotated copy of question 3
TEST_ROWS = [
    {"index": 3, "question": "Which?", "hint": "Zoo.", "A": "cat", "B": "dog", "C": "cow",
     "D": None, "category": "animals", "source": "s", "l2-category": "p", "comment": None,
     "split": "test"},
    {"index": 1000003, "question": "Which?", "hint": "Zoo.", "A": "dog", "B": "cow", "C": "cat",
     "D": None, "category": "animals", "source": "s", "l2-category": "p", "comment": None,
     "split": "test"},
    {"index": 4, "question": "Colour?", "hint": None, "A": "red", "B": "blue", "C": None,
     "D": None, "category": "colours", "source": "s", "l2-category": "p", "comment": None,
     "split": "test"},
]  # fmt: skip


def test_mmbench_test_tsv_becomes_llava_s_xlsx(tmp_path):
    mmbench_tsv(tmp_path / "mmbench_test_en_20231003.tsv", TEST_ROWS)
    ds = mmbench.MMBench(str(tmp_path), layout="llava", questions="mmbench_test_en_20231003.tsv")
    # each row asked once, as given (the server rotates through its own copies)
    assert [item["id"] for item in ds.items] == ["3-r0", "1000003-r0", "4-r0"]
    assert ds[0].question.startswith("Zoo.\nWhich?\nA. cat\nB. dog\nC. cow\n")
    assert server_scored(ds)
    out = tmp_path / "submission.xlsx"
    mmbench.submission.write(records(ds, {"3-r0": "B", "1000003-r0": " A\n"}), ds, out)
    table = pd.read_excel(out, engine="openpyxl")
    # the TSV less hint, category, source, image, comment, l2-category; `prediction` 7th
    assert list(table.columns) == ["index", "question", "A", "B", "C", "D", "prediction", "split"]
    assert table["index"].tolist() == [3, 1000003, 4]
    assert table["A"].tolist() == ["cat", "dog", "red"]
    predictions = table["prediction"].tolist()
    assert predictions[:2] == ["B", "A"] and pd.isna(predictions[2])  # no prediction: empty


def test_mmbench_test_parquet_keeps_its_columns_less_the_dropped(roots, tmp_path):
    ds = mmbench.MMBench(str(roots["mmbench_test"]), split="test")
    assert [item["id"] for item in ds.items] == ["7-r0", "1000007-r0"] and server_scored(ds)
    out = tmp_path / "submission.xlsx"
    mmbench.submission.write(records(ds, {"7-r0": "B", "1000007-r0": "A"}), ds, out)
    table = pd.read_excel(out, engine="openpyxl")
    assert list(table.columns) == ["index", "question", "A", "B", "C", "D", "prediction"] + [
        "answer",
        "split",
    ]
    assert table["prediction"].tolist() == ["B", "A"]


def test_the_mmbench_writer_without_openpyxl_says_how_to_install_it(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openpyxl" else real(name, *a)
    )
    name = "vzexp.data.benchmarks.mmbench.submission"
    with pytest.raises(ConfigError, match=r"needs openpyxl: pip install openpyxl$"):
        submission_for(name)
    assert submission_for("vzexp.data.benchmarks.vqav2.submission").filename == "submission.json"
    # past the check (the package removed later): the writer says the same, in one line

    def no_openpyxl(*args, **kwargs):
        raise ImportError("Missing optional dependency 'openpyxl'.  Use pip or conda to install")

    monkeypatch.setattr(pd.DataFrame, "to_excel", no_openpyxl)
    mmbench_tsv(tmp_path / "t.tsv", TEST_ROWS[:1])
    ds = mmbench.MMBench(str(tmp_path), layout="llava", questions="t.tsv")
    with pytest.raises(ConfigError, match=r"^data.submission='.*' is not allowed: .*pip install"):
        mmbench.submission.write([], ds, tmp_path / "s.xlsx")


def test_submission_for_refuses_what_is_not_a_submission():
    with pytest.raises(ConfigError, match="is not allowed: not a Submission; null, or the"):
        submission_for("vzexp.data.benchmarks.vqav2.scorer")
    with pytest.raises(ConfigError, match="built in: vzexp.data.benchmarks.mmbench.submission"):
        submission_for("vzexp.data.benchmarks.vqav2.nothing")


def test_a_server_scored_split_has_no_score_and_no_accuracy(roots):
    ds = vqav2.VQAv2(str(roots["vqav2_testdev"]), split="testdev")
    scorer = scorer_of("vzexp.data.benchmarks.vqav2.scorer", ds)
    assert scorer is UNSCORED
    rows = [
        {**r, "correct": scorer.sample(r), "visual_tokens": 4}
        for r in records(ds, {"20": "dog", "21": "2"})
    ]
    metrics = summarize(rows, "cpu", scorer)
    assert "accuracy" not in metrics and metrics["samples"] == 2.0
