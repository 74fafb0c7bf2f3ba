"""Official benchmark scoring rules (vzexp.data.benchmarks.<name>) on hand-worked cases,
awkward ones included. Each expected value is worked out by hand from the official script's
rule, see the comments. The ScienceQA, SEED-Bench and MMBench rules have their own test files."""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from vzexp.data.benchmarks.gqa import gqa_match
from vzexp.data.benchmarks.mme import parse_mme
from vzexp.data.benchmarks.mmmu import eval_open, parse_multi_choice_response, parse_open_response
from vzexp.data.benchmarks.pope import parse_pope
from vzexp.data.benchmarks.textvqa import textvqa_accuracy
from vzexp.data.benchmarks.vqa_normalize import evalai_normalize, process_punctuation, vqa_process
from vzexp.data.benchmarks.vqav2 import leave_one_out_accuracy, vqa_accuracy
from vzexp.data.scoring import scorer_for
from vzexp.errors import ConfigError

CONF = Path(__file__).resolve().parents[2] / "conf" / "data"
BENCHMARKS = ["vqav2", "textvqa", "gqa", "pope", "mme", "scienceqa", "seed", "mmbench", "mmmu"]
# each benchmark's scorer as its data config names it (conf/data/<name>.yaml: data.scorer)
SCORERS = {name: scorer_for(f"vzexp.data.benchmarks.{name}.scorer") for name in BENCHMARKS}


def rec(prediction, answer="", id="q", **meta):
    return {"id": id, "prediction": prediction, "answer": answer, "meta": meta}


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_data_config_names_a_scorer_and_a_reader(path):
    config = OmegaConf.load(path)
    scorer = scorer_for(config.scorer)
    assert callable(scorer.sample) and callable(scorer.metrics)
    assert isinstance(get_class(config.dataset._target_), type)
    if path.stem in BENCHMARKS:
        assert config.scorer == f"vzexp.data.benchmarks.{path.stem}.scorer"
        assert scorer.metrics([]) == {}  # no records, no metrics (the official scripts crash)


# --- VQA normalisation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("the dog", "dog"),  # articles dropped
        ("A Dog", "dog"),  # lower-cased, then the article goes
        ("a an the", ""),
        ("two", "2"),  # number words -> digits
        ("Two dogs", "2 dogs"),
        ("none", "0"),
        ("eleven", "eleven"),  # only zero..ten
        ("yes.", "yes"),  # a period not followed by a digit is deleted
        ("Yes", "yes"),
        ("3.5", "3.5"),  # ... but kept before a digit
        ("3.", "3"),  # the official look-behind is mistyped: a period after a digit goes too
        ("e.g. cars", "eg cars"),
        ("3,000", "3000"),  # digit-comma-digit: every listed mark is deleted outright
        ("1,000 (approx)", "1000 approx"),  # ... including the brackets
        ("red,white", "red white"),  # no digit-comma-digit, mark not next to a space -> space
        ("red, white", "red white"),  # mark next to a space -> deleted
        ("(approx) 1000", "approx 1000"),  # "(" -> space (no space next to it), ")" deleted
        ("dont", "don't"),  # contractions get their apostrophe back
        ("couldnt've", "couldn't've"),
        ("couldn'tve", "couldn't've"),
        ("somebody'd", "somebodyd"),  # sic, the official table
        ("12:30", "12:30"),  # ":" is not in the punctuation list
        ("man's", "man's"),  # nor is "'"
    ],
)
def test_vqa_process(text, expected):
    assert vqa_process(text) == expected


def test_period_rule_removes_at_most_32_periods():
    # The official passes re.UNICODE (== 32) positionally, i.e. as the count of replacements.
    assert process_punctuation("." * 40) == "." * 8
    assert process_punctuation("." * 32) == ""


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Yes.", "yes"),
        ("  Two\n", "2"),
        ("red,white", "redwhite"),  # EvalAI deletes every comma before the punctuation rule
        ("3,000", "3000"),
        ("what?", "what"),
        ("man's", "man 's"),  # "'s" is split off
        ("A", ""),  # LLaVA issue #618: a bare "A" is an article and vanishes
        ("dont\tknow", "don't know"),
    ],
)
def test_evalai_normalize(text, expected):
    assert evalai_normalize(text) == expected


# --- VQA soft accuracy -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "matches, expected",
    [
        (0, 0.0),
        # 1 match: leaving it out -> 0/3 (once); leaving out one of the 9 others -> 1/3 (9 times)
        # (0 + 9 * 1/3) / 10 = 0.3
        (1, 0.3),
        # 2 matches: 2 * (1/3) + 8 * (2/3) = 2/3 + 16/3 = 6, / 10 = 0.6
        (2, 0.6),
        # 3 matches: 3 * (2/3) + 7 * min(1, 3/3) = 2 + 7 = 9, / 10 = 0.9
        (3, 0.9),
        # 4 matches: every subset still has >= 3 -> 1.0
        (4, 1.0),
        (10, 1.0),
    ],
)
def test_leave_one_out(matches, expected):
    answers = ["cat"] * matches + ["dog"] * (10 - matches)
    assert leave_one_out_accuracy("cat", answers) == pytest.approx(expected)


def test_vqa_two_of_ten_is_point_six():
    answers = ["red"] * 2 + ["blue"] * 5 + ["navy"] * 3
    assert vqa_accuracy("Red.", answers) == pytest.approx(0.6)
    assert vqa_accuracy("red", answers) == pytest.approx(0.6)
    assert SCORERS["vqav2"].sample(rec("red") | {"answers": answers}) == pytest.approx(0.6)


def test_vqa_number_words_and_digits():
    answers = ["2"] * 5 + ["two"] * 3 + ["3"] * 2
    # Answers differ -> all normalised: "two" -> "2", so 8 of 10 say "2".
    assert vqa_accuracy("two", answers) == 1.0
    assert vqa_accuracy("2", answers) == 1.0
    assert vqa_accuracy("Three.", answers) == pytest.approx(0.6)  # "3": 2 of 10


def test_vqa_unanimous_answers_are_matched_literally():
    # All ten agree -> the official eval normalises nothing (GT-Vision-Lab/VQA issue #14).
    yes10 = ["yes"] * 10
    assert vqa_accuracy("Yes.", yes10, evalai_preprocess=False) == 0.0  # "Yes." != "yes"
    assert vqa_accuracy("Yes.", yes10) == 1.0  # LLaVA's EvalAI step made it "yes" beforehand
    # As soon as one annotator differs, the prediction is normalised too.
    assert vqa_accuracy("Yes.", ["yes"] * 9 + ["no"], evalai_preprocess=False) == 1.0
    # The flip side: the EvalAI step turns "two" into "2", the unanimous "two" stays as is.
    assert vqa_accuracy("two", ["two"] * 10) == 0.0
    assert vqa_accuracy("two", ["two"] * 10, evalai_preprocess=False) == 1.0


def test_vqa_contractions_and_articles():
    answers = ["don't know"] * 4 + ["no"] * 6
    assert vqa_accuracy("dont know", answers) == 1.0
    answers = ["the beach"] * 3 + ["ocean"] * 7
    # gts normalised to "beach" (3 of 10): 0.9
    assert vqa_accuracy("A beach.", answers) == pytest.approx(0.9)


def test_vqa_vs_textvqa_possessive():
    answers = ["man's"] * 4 + ["woman's"] * 6
    # VQAv2 path: EvalAI makes the prediction "man 's"; the answers keep "man's" -> no match.
    assert vqa_accuracy("man's", answers) == 0.0
    # TextVQA path: both sides through EvalAI -> "man 's" == "man 's", 4 of 10 -> 1.0.
    assert textvqa_accuracy("man's", answers) == 1.0


def test_textvqa():
    answers = ["3000"] * 3 + ["3,000 feet"] * 2 + ["three"] * 5
    # "3,000" -> "3000" (3 matches): 0.9. The "three"s become "3", which is not "3000".
    assert textvqa_accuracy("3,000", answers) == pytest.approx(0.9)
    # "Three." -> "3": 5 matches -> 1.0
    assert textvqa_accuracy("Three.", answers) == 1.0
    out = SCORERS["textvqa"].metrics(
        [rec("3,000", answers=answers), rec("3,000 feet", answers=answers) | {"answers": answers}]
    )
    # "3,000 feet" -> "3000 feet": 2 matches -> 0.6; mean (0.9 + 0.6) / 2 = 0.75
    assert out == {"accuracy": pytest.approx(0.75)}


def test_vqav2_scorer_reads_answers_from_meta():
    answers = ["yes"] * 10
    out = SCORERS["vqav2"].metrics([rec("Yes", answers=answers), rec("no", answers=answers)])
    assert out == {"accuracy": 0.5}


# --- GQA / exact match -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("yes", "yes", 1.0),
        ("Yes.", "yes", 1.0),  # rstrip('.') + lower()
        ("Yes!", "yes", 0.0),  # nothing else is stripped
        ("The table", "table", 0.0),  # no article removal in LLaVA's GQA conversion
        ("Traffic light", "traffic light", 1.0),
        ("two", "2", 0.0),  # no number mapping either
    ],
)
def test_gqa(pred, gold, expected):
    assert gqa_match(pred, gold) == expected


# --- POPE --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Yes, there is a dog in the image.", "yes"),
        ("No, there is not.", "no"),
        ("There is no cat in the image.", "no"),
        ("Not", "yes"),  # only "No", "no" and "not" count: "Not" is none of them
        ("NO", "yes"),  # case matters in eval_pope.py
        ("There isn't a dog.", "yes"),  # "isn't" is not "not"
        ("Yes. There is no cat.", "yes"),  # only the first sentence is read
        ("no,", "no"),  # commas deleted before splitting
    ],
)
def test_parse_pope(text, expected):
    assert parse_pope(text) == expected


def test_pope_metrics_table():
    rows = [
        # split, gold, prediction -> parsed / outcome
        ("random", "yes", "Yes, there is a dog."),  # yes: TP
        ("random", "yes", "Yes"),  # TP
        ("random", "yes", "No, there is not."),  # no: FN
        ("random", "no", "No."),  # TN
        ("adversarial", "no", "There is no cat in the image."),  # no: TN
        ("adversarial", "no", "Yes."),  # FP
        ("adversarial", "no", "NO"),  # parsed "yes" (case): FP
        ("adversarial", "yes", "There isn't a dog."),  # parsed "yes": TP
    ]
    records = [rec(p, g, id=str(i), category=s) for i, (s, g, p) in enumerate(rows)]
    out = SCORERS["pope"].metrics(records)
    # all: TP=3 FP=2 TN=2 FN=1
    assert out["accuracy"] == pytest.approx(5 / 8)  # (3 + 2) / 8
    assert out["precision"] == pytest.approx(3 / 5)  # 3 / (3 + 2)
    assert out["recall"] == pytest.approx(3 / 4)  # 3 / (3 + 1)
    assert out["f1"] == pytest.approx(2 / 3)  # 2 * 0.6 * 0.75 / 1.35 = 0.9 / 1.35
    assert out["yes_ratio"] == pytest.approx(5 / 8)
    # random: TP=2 FN=1 TN=1 FP=0
    assert out["random/accuracy"] == pytest.approx(3 / 4)
    assert out["random/precision"] == 1.0
    assert out["random/recall"] == pytest.approx(2 / 3)
    assert out["random/f1"] == pytest.approx(0.8)  # 2 * 1 * 2/3 / (5/3) = 4/5
    assert out["random/yes_ratio"] == 0.5
    # adversarial: TP=1 FP=2 TN=1 FN=0
    assert out["adversarial/accuracy"] == 0.5
    assert out["adversarial/precision"] == pytest.approx(1 / 3)
    assert out["adversarial/recall"] == 1.0
    assert out["adversarial/f1"] == pytest.approx(0.5)  # 2 * 1/3 * 1 / (4/3)
    assert out["adversarial/yes_ratio"] == 0.75
    assert not any(k.startswith("popular/") for k in out)
    assert out["split_mean/f1"] == pytest.approx(0.65)  # (0.8 + 0.5) / 2
    assert out["split_mean/accuracy"] == pytest.approx(0.625)  # (0.75 + 0.5) / 2
    assert [SCORERS["pope"].sample(r) for r in records] == [1, 1, 0, 1, 1, 0, 0, 1]


def test_pope_all_no_has_zero_precision_not_an_error():
    out = SCORERS["pope"].metrics([rec("No", "yes"), rec("No", "no")])
    assert out["precision"] == out["recall"] == out["f1"] == 0.0
    assert out["accuracy"] == 0.5 and out["yes_ratio"] == 0.0


# --- MME ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Yes", "yes"),
        ("No.", "no"),  # not exactly "no" -> first four characters "no." contain "no"
        ("  NO ", "no"),
        ("Yes, there is a dog.", "yes"),
        ("Not at all", "no"),  # "not " contains "no"
        ("nope", "no"),
        ("There is no dog", "other"),  # "ther" has neither
        ("I think yes", "other"),
        ("y", "other"),  # lmms-eval maps "y" to yes; the official does not
    ],
)
def test_parse_mme(text, expected):
    assert parse_mme(text) == expected


def test_mme_acc_plus_pairs_by_image():
    records = [
        # existence, image 1: both right
        rec("Yes", "Yes", category="existence", image="e1"),
        rec("No", "No", category="existence", image="e1"),
        # existence, image 2: second wrong
        rec("Yes", "Yes", category="existence", image="e2"),
        rec("Yes", "No", category="existence", image="e2"),
        # count, image 3: "other" is wrong
        rec("There are two.", "Yes", category="count", image="c1"),
        rec("No", "No", category="count", image="c1"),
        # OCR given in lower case, both right
        rec("yes", "Yes", category="ocr", image="o1"),
        rec("no", "No", category="ocr", image="o1"),
        # cognition
        rec("Yes", "Yes", category="code_reasoning", image="k1"),
        rec("No", "No", category="code_reasoning", image="k1"),
        # not an MME subtask: reported, summed nowhere
        rec("Yes", "Yes", category="foo", image="f1"),
    ]
    out = SCORERS["mme"].metrics(records)
    assert out["existence/acc"] == 0.75  # 3 of 4 questions
    assert out["existence/acc_plus"] == 0.5  # 1 of 2 images
    assert out["existence/score"] == pytest.approx(125.0)  # 75 + 50
    assert out["count/acc"] == 0.5 and out["count/acc_plus"] == 0.0
    assert out["count/score"] == pytest.approx(50.0)
    assert out["OCR/score"] == pytest.approx(200.0)
    assert out["code_reasoning/score"] == pytest.approx(200.0)
    assert out["foo/score"] == pytest.approx(200.0)
    assert out["perception"] == pytest.approx(125 + 50 + 200)
    assert out["cognition"] == pytest.approx(200.0)
    assert SCORERS["mme"].sample(records[3]) == 0.0


OPTIONS = ["cat", "dog", "red cat", "bird"]


# --- MMMU --------------------------------------------------------------------------------------


def mc(text, rid="mmmu-1"):
    letters = ["A", "B", "C", "D"]
    rng = random.Random(42 + zlib.crc32(rid.encode()))
    return parse_multi_choice_response(text, letters, dict(zip(letters, OPTIONS)), rng)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B.", "B"),  # trailing "." stripped, then " B " matches
        ("The answer is B.", "B"),
        ("(A) is wrong, (B) is right", "B"),  # several bracketed: the last one
        ("I pick A but maybe C", "C"),  # several bare letters: the last one
        # >5 words and no letter: option texts; "cat" and "red cat" both occur and the last
        # occurrence of "cat" starts after that of "red cat" -> "cat" (A)
        ("I believe the right option is the red cat here", "A"),
    ],
)
def test_mmmu_multi_choice(text, expected):
    assert mc(text) == expected


def test_mmmu_unparsable_choice_is_random_but_deterministic():
    # "b": no "(X)", no " X ", too short for the text rule -> random letter, seeded per id.
    expected = random.Random(42 + zlib.crc32(b"mmmu-7")).choice(["A", "B", "C", "D"])
    assert mc("b", "mmmu-7") == expected
    assert mc("b", "mmmu-7") == expected  # same id, same letter, whatever the order
    # "B. cat": no "(B)", no " B " (the period is attached), only 2 words -> random as well.
    assert mc("B. cat", "mmmu-7") == expected
    record = rec("b", expected, id="mmmu-7", options=OPTIONS, question_type="multiple-choice")
    assert SCORERS["mmmu"].sample(record) == 1.0


@pytest.mark.parametrize(
    "text, gold, expected",
    [
        ("3.0", "3", True),  # both become the float 3.0
        ("3", "3.0", True),
        ("The answer is 3.0", "3", True),  # tail after "is " -> "3.0"
        ("3.001", "3", True),  # rounded to 2 decimals
        ("3.01", "3", False),
        ("1,000", "1000", True),  # commas dropped in numbers
        ("It is a cat.", "cat", True),  # gold string inside the predicted tail "a cat"
        ("banana", "a", False),  # one-character golds need a space: " a" / "a "
        ("a", "a", True),
        ("1/2", "['0.5', '1/2']", True),  # a gold list spelled as a string
    ],
)
def test_mmmu_open(text, gold, expected):
    record = rec(text, gold, id="o", question_type="open")
    assert SCORERS["mmmu"].sample(record) == float(expected)


def test_mmmu_open_parsing_details():
    # No indicator: the whole (lower-cased, period-stripped) output plus its numbers.
    assert set(parse_open_response("Roughly 3.5 m.")) == {"roughly 3.5 m", 3.5}
    # The shortest tail over the indicators of a line is kept: "x = 5" -> "5".
    assert 5.0 in parse_open_response("so the result is x = 5")
    assert eval_open(["5"], parse_open_response("so the result is x = 5"))


def test_mmmu_scorer_micro_and_per_type():
    records = [
        rec("(A)", "A", id="1", options=OPTIONS, question_type="multiple-choice"),
        rec("C", "B", id="2", options=OPTIONS, question_type="multiple-choice"),
        rec("3.0", "3", id="3", question_type="open"),
    ]
    out = SCORERS["mmmu"].metrics(records)
    assert out["accuracy"] == pytest.approx(2 / 3)  # micro over the 3 records
    assert out["multiple-choice/accuracy"] == 0.5
    assert out["open/accuracy"] == 1.0


def test_sample_scores_are_in_unit_interval():
    records = {
        "vqav2": rec("two", answers=["2"] * 2 + ["3"] * 8) | {"answers": ["2"] * 2 + ["3"] * 8},
        "textvqa": rec("Stop", answers=["stop"] * 10) | {"answers": ["stop"] * 10},
        "gqa": rec("yes", "yes"),
        "pope": rec("yes", "no", category="random"),
        "mme": rec("Yes", "Yes", category="count", image="1"),
        "scienceqa": rec("A", "A", options=OPTIONS),
        "seed": rec("A", "A"),
        "mmbench": rec("A", "A", options=OPTIONS, circular_id=1),
        "mmmu": rec("A", "A", options=OPTIONS, question_type="multiple-choice"),
    }
    for name, record in records.items():
        assert 0.0 <= SCORERS[name].sample(record) <= 1.0, name
    assert SCORERS["vqav2"].sample(records["vqav2"]) == pytest.approx(0.6)


def test_scorer_for_takes_a_dotted_path_or_exact_match():
    pope = scorer_for("vzexp.data.benchmarks.pope.scorer")
    assert pope.name == "pope"
    assert pope.sample(rec("No, there is not.", "no", category="random")) == 1.0
    assert scorer_for("exact_match").sample(rec("The Dog.", "dog")) == 1.0
    assert scorer_for("vzexp.data.benchmarks.seed.llava_scorer").name == "seed_llava"


@pytest.mark.parametrize(
    "value, reason",
    [
        ("pope", "exact_match, or the dotted path of a vzexp.data.scoring.Scorer"),
        (
            "vzexp.data.benchmarks.nope.scorer",
            "module vzexp.data.benchmarks.nope cannot be imported",
        ),
        ("vzexp.data.benchmarks.pope.nope", "module vzexp.data.benchmarks.pope has no nope"),
        ("vzexp.data.benchmarks.pope.POPE", "POPE is not a Scorer"),
    ],
)
def test_an_unknown_scorer_is_one_line_naming_data_scorer(value, reason):
    with pytest.raises(ConfigError) as err:
        scorer_for(value)
    message = str(err.value)
    assert message.startswith(f"data.scorer={value!r} is not allowed: {reason}")
    assert "vzexp.data.benchmarks.mmbench.scorer_2026" in message  # the built-in ones listed
    assert "\n" not in message
