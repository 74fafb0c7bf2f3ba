"""Real-benchmark readers on small fixture copies of each format, written here: lmms-eval's parquet
files (through `datasets`) and LLaVA's question JSONL + image folder; prompts, answers, scorer
inputs, and the errors for missing, malformed and corrupt data."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from benchmark_fixtures import fixtures, picture, real_benchmarks
from hydra.utils import get_class
from omegaconf import OmegaConf

from vzexp.data.benchmarks import gqa, mmbench, mme, mmmu, pope, scienceqa, seed, textvqa
from vzexp.data.benchmarks.common import LETTER, SHORT
from vzexp.data.scoring import scorer_for
from vzexp.errors import MissingPathError
from vzexp.list import source

SCORER = "vzexp.data.benchmarks.{}.scorer"  # what conf/data/<name>.yaml names

# every real benchmark of the registry, with the dataset class its YAML names
CLASSES = {
    name: get_class(OmegaConf.create(source("data", name)).dataset["_target_"])
    for name in real_benchmarks()
}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return fixtures(tmp_path_factory.mktemp("benchmarks"))


def records(dataset, predictions):
    out = []
    for i, prediction in enumerate(predictions):
        s = dataset[i]
        out.append({"id": s.id, "prediction": prediction, "answer": s.answer, "meta": s.meta})
    return out


def test_every_real_benchmark_has_a_fixture_copy(roots):
    assert sorted(roots) == real_benchmarks()


def test_pope(roots):
    ds = pope.POPE(roots["pope"])
    s = ds[0]
    assert s.question == f"Is there a dog in the image?\n{SHORT}"
    assert (s.answer, s.meta["category"], s.image.size) == ("yes", "adversarial", (24, 24))
    metrics = scorer_for(SCORER.format("pope")).metrics(records(ds, ["Yes.", "No", "yes"]))
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["random/accuracy"] == 0.0 and metrics["adversarial/accuracy"] == 1.0


def test_mme_pairs_questions_of_one_image(roots):
    ds = mme.MME(roots["mme"])
    assert ds[0].question == f"Are there two dogs?\n{SHORT}"
    assert ds[0].meta == {"category": "count", "image": "count/1.jpg"}
    assert len({ds.sample_id(i) for i in range(len(ds))}) == 2  # two questions, one image
    metrics = scorer_for(SCORER.format("mme")).metrics(records(ds, ["Yes", "Yes"]))
    # acc 1/2, acc+ 0 (the image's pair is not both right): score 50
    assert metrics["count/score"] == pytest.approx(50.0)


@pytest.mark.parametrize("name", ["vqav2", "textvqa"])
def test_vqa_soft_accuracy_from_ten_answers(roots, name):
    ds = CLASSES[name](roots[name])
    assert ds[0].answer == "3" and len(ds[0].meta["answers"]) == 10
    metrics = scorer_for(SCORER.format(name)).metrics(records(ds, ["2", "Red"]))
    assert metrics["accuracy"] == pytest.approx((0.6 + 1.0) / 2)  # 2 of 10 annotators: 0.6


def test_gqa_joins_questions_to_their_images(roots):
    ds = gqa.GQA(str(roots["gqa"]))
    assert [ds.sample_id(i) for i in range(2)] == ["g1", "g2"]
    assert np.array_equal(np.asarray(ds[0].image), np.asarray(picture(1)))  # imageId i2
    assert (
        scorer_for(SCORER.format("gqa")).metrics(records(ds, ["No.", "right"]))["accuracy"] == 0.5
    )


def test_scienceqa_letters_and_context(roots):
    ds = scienceqa.ScienceQA(roots["scienceqa"])
    assert ds[0].question == f"Context: Animals.\nWhich is a mammal?\nA. cat\nB. frog\n{LETTER}"
    assert ds[1].question.startswith("Which is hot?\nA. ice\nB. sun\nC. snow")
    assert [ds[0].answer, ds[1].answer] == ["A", "B"]
    assert (
        scorer_for(SCORER.format("scienceqa")).metrics(records(ds, ["A", "C"]))["accuracy"] == 0.5
    )


def test_seed_keeps_image_questions_only(roots):
    ds = seed.SEEDBench(roots["seed"])
    assert len(ds) == 1 and ds[0].answer == "B"
    assert ds[0].question == f"How many?\nA. 1\nB. 2\nC. 3\nD. 4\n{LETTER}"


def test_mmbench_asks_every_rotation(roots):
    ds = mmbench.MMBench(roots["mmbench"])
    assert len(ds) == 3 + 2  # 3 options -> 3 rotations; 2 options -> 2
    first, second = ds[0], ds[1]
    assert first.question == f"A zoo.\nWhich animal?\nA. cat\nB. dog\nC. cow\n{LETTER}"
    assert second.meta["options"] == ["dog", "cow", "cat"] and second.answer == "A"
    assert {ds[i].meta["circular_id"] for i in range(3)} == {7}
    # every rotation right for question 7, one wrong for question 8 -> circular 1/2
    metrics = scorer_for(SCORER.format("mmbench")).metrics(records(ds, ["B", "A", "C", "A", "A"]))
    assert metrics["accuracy"] == 0.5


def test_mmmu_options_and_open_questions(roots):
    ds = mmmu.MMMU(roots["mmmu"])
    assert ds[0].question == f"Which style?\nA. Baroque\nB. Cubism\n{LETTER}"
    assert ds[1].question == f"What is x in?\n{SHORT}"
    assert ds[1].meta["question_type"] == "open"
    assert (
        scorer_for(SCORER.format("mmmu")).metrics(records(ds, ["B", "x = 3.0"]))["accuracy"] == 1.0
    )


def jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_llava_layout_pope_labels_by_category_in_order(tmp_path):
    # LLaVA's playground/data/eval/pope: the question file, coco/coco_pope_<split>.json, val2014/
    (tmp_path / "val2014").mkdir()
    picture(0).save(tmp_path / "val2014" / "a.jpg")
    questions = [
        {"question_id": 1, "image": "a.jpg", "text": "Is there a cat?", "category": "random"},
        {"question_id": 2, "image": "a.jpg", "text": "Is there a dog?", "category": "popular"},
        {"question_id": 3, "image": "a.jpg", "text": "Is there a cow?", "category": "random"},
    ]
    jsonl(tmp_path / "llava_pope_test.jsonl", questions)
    # eval_pope.py pairs each split's answers with its label file by order, not by id
    jsonl(
        tmp_path / "coco" / "coco_pope_random.json",
        [{"question_id": 9, "label": "yes"}, {"question_id": 9, "label": "no"}],
    )
    jsonl(tmp_path / "coco" / "coco_pope_popular.json", [{"question_id": 9, "label": "no"}])
    ds = pope.POPE(str(tmp_path), layout="llava")
    assert [(ds[i].id, ds[i].answer, ds[i].meta["category"]) for i in range(3)] == [
        ("1", "yes", "random"),
        ("2", "no", "popular"),
        ("3", "no", "random"),
    ]
    assert ds[0].question == "Is there a cat?"  # LLaVA's text is the prompt


def test_llava_layout_answer_files_of_gqa_textvqa_scienceqa(tmp_path):
    picture(0).save(tmp_path / "a.png")
    q = [{"question_id": "g1", "image": "a.png", "text": "Q?"}]
    jsonl(tmp_path / "q.jsonl", q)
    # GQA: testdev_balanced_questions.json is a dict keyed by question id
    (tmp_path / "gqa.json").write_text(json.dumps({"g1": {"answer": "left", "imageId": "x"}}))
    ds = gqa.GQA(
        str(tmp_path), layout="llava", questions="q.jsonl", annotations="gqa.json", images="."
    )
    assert ds[0].answer == "left"
    # TextVQA_0.5.1_val.json: {"data": [{question_id, answers}]}
    answers = ["stop"] * 7 + ["halt"] * 3
    (tmp_path / "tv.json").write_text(
        json.dumps({"data": [{"question_id": "g1", "answers": answers}]})
    )
    ds = textvqa.TextVQA(
        str(tmp_path), layout="llava", questions="q.jsonl", annotations="tv.json", images="."
    )
    assert (ds[0].answer, ds[0].meta["answers"]) == ("stop", answers)
    # ScienceQA: llava_test_CQM-A.json conversations + problems.json (answer index, choices)
    cqm = [
        {
            "id": "7",
            "image": "a.png",
            "conversations": [{"from": "human", "value": "<image>\nWhich?\nA. x\nB. y"}],
        },
        {"id": "8", "conversations": [{"from": "human", "value": "text only"}]},
    ]
    (tmp_path / "cqm.json").write_text(json.dumps(cqm))
    (tmp_path / "problems.json").write_text(
        json.dumps(
            {"7": {"answer": 1, "choices": ["x", "y"]}, "8": {"answer": 0, "choices": ["p"]}}
        )
    )
    ds = scienceqa.ScienceQA(str(tmp_path), layout="llava", questions="cqm.json", images=".")
    assert len(ds) == 1  # the -IMG set: questions with an image
    assert (ds[0].question, ds[0].answer, ds[0].meta["options"]) == (
        "Which?\nA. x\nB. y",
        "B",
        ["x", "y"],
    )


def test_missing_malformed_and_corrupt_data(tmp_path):
    with pytest.raises(MissingPathError, match="data.dataset.root is not set"):
        pope.POPE(None)
    with pytest.raises(MissingPathError, match="no such directory"):
        pope.POPE(str(tmp_path / "nope"))
    with pytest.raises(MissingPathError, match="no .parquet files"):
        pope.POPE(str(tmp_path))
    files = dict(layout="llava", questions="q.jsonl", annotations="a.jsonl", images="images")
    (tmp_path / "q.jsonl").write_text('{"question_id": 1, "image": "x.png", "text": "q"}\n{oops\n')
    (tmp_path / "a.jsonl").write_text("")
    with pytest.raises(MissingPathError, match="line 2 is not valid JSON"):
        pope.POPE(str(tmp_path), **files)
    (tmp_path / "q.jsonl").write_text('{"question_id": 1, "image": "x.png", "text": "q"}\n')
    with pytest.raises(MissingPathError, match="no answer for question_id 1"):
        pope.POPE(str(tmp_path), **files)
    (tmp_path / "a.jsonl").write_text('{"question_id": 1, "label": "yes"}\n')
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "x.png").write_bytes(b"not a png")
    ds = pope.POPE(str(tmp_path), **files)
    with pytest.raises(MissingPathError, match="image of sample '1' could not be read"):
        ds[0]


def test_llava_layout_mmbench_tsv_and_seed_json(tmp_path):
    buffer = io.BytesIO()
    picture(0).save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    header = "index\tquestion\thint\tA\tB\tC\tD\tanswer\tcategory\timage\n"
    (tmp_path / "mmbench_dev_20230712.tsv").write_text(
        header + f"3\tWhich?\t\tcat\tdog\t\t\tB\tanimals\t{encoded}\n"
    )
    ds = mmbench.MMBench(str(tmp_path), layout="llava")
    assert [ds[i].answer for i in range(len(ds))] == ["B", "A"]  # two rotations
    assert ds[0].question == f"Which?\nA. cat\nB. dog\n{LETTER}"
    assert np.array_equal(np.asarray(ds[0].image), np.asarray(picture(0)))
    # the TSV holds the images beside the answers: its digest follows the image, not the answer
    from vzexp.tasks.common import data_digest

    first = data_digest(ds)
    (tmp_path / "mmbench_dev_20230712.tsv").write_text(
        header + f"3\tWhich?\t\tcat\tdog\t\t\tA\tanimals\t{encoded}\n"
    )
    assert data_digest(mmbench.MMBench(str(tmp_path), layout="llava")) == first
    buffer = io.BytesIO()
    picture(1).save(buffer, format="PNG")
    other = base64.b64encode(buffer.getvalue()).decode()
    (tmp_path / "mmbench_dev_20230712.tsv").write_text(
        header + f"3\tWhich?\t\tcat\tdog\t\t\tA\tanimals\t{other}\n"
    )
    assert data_digest(mmbench.MMBench(str(tmp_path), layout="llava")) != first
    (tmp_path / "bad.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(MissingPathError, match="not MMBench's TSV"):
        mmbench.MMBench(str(tmp_path), layout="llava", questions="bad.tsv")
    # SEED: llava-seed-bench.jsonl + SEED-Bench.json {"questions": [...]}
    picture(1).save(tmp_path / "s.jpg")
    jsonl(
        tmp_path / "llava-seed-bench.jsonl",
        [{"question_id": "s1", "image": "s.jpg", "text": "How?"}],
    )
    (tmp_path / "SEED-Bench.json").write_text(
        json.dumps({"questions": [{"question_id": "s1", "answer": "C", "data_type": "image"}]})
    )
    ds = seed.SEEDBench(str(tmp_path), layout="llava")
    assert (ds[0].id, ds[0].question, ds[0].answer) == ("s1", "How?", "C")


def test_llava_layout_mme_answers_from_its_txt_files(tmp_path):
    # MME_Benchmark_release_version: count/ keeps image + txt side by side; artwork/ keeps
    # images/ and questions_answers_YN/ (as LLaVA's convert_answer_to_mme.py reads them)
    release = tmp_path / "MME_Benchmark_release_version"
    (release / "count").mkdir(parents=True)
    picture(0).save(release / "count" / "1.png")
    (release / "count" / "1.txt").write_text(
        "Are there two dogs? Please answer yes or no.\tYes\n"
        "Are there three dogs? Please answer yes or no.\tNo\n"
    )
    (release / "artwork" / "images").mkdir(parents=True)
    (release / "artwork" / "questions_answers_YN").mkdir()
    picture(1).save(release / "artwork" / "images" / "9.png")
    (release / "artwork" / "questions_answers_YN" / "9.txt").write_text(
        "Is this by Monet?  Please answer yes or no.\tNo\n"
    )
    questions = [
        {
            "question_id": "count/1.png",
            "image": "count/1.png",
            "text": f"Are there two dogs?\n{SHORT}",
        },
        {
            "question_id": "count/1.png",
            "image": "count/1.png",
            "text": f"Are there three dogs?\n{SHORT}",
        },
        {
            "question_id": "artwork/9.png",
            "image": "artwork/9.png",
            "text": f"Is this by Monet?\n{SHORT}",
        },
    ]
    jsonl(tmp_path / "llava_mme.jsonl", questions)
    ds = mme.MME(str(tmp_path), layout="llava")
    assert [ds[i].answer for i in range(3)] == ["Yes", "No", "No"]
    assert ds[2].meta == {"category": "artwork", "image": "artwork/9.png"}
    assert np.array_equal(np.asarray(ds[2].image), np.asarray(picture(1)))
    metrics = scorer_for(SCORER.format("mme")).metrics(records(ds, ["yes", "no", "yes"]))
    assert metrics["count/score"] == 200.0 and metrics["artwork/score"] == 0.0
