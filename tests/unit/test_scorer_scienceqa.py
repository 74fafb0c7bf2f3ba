"""ScienceQA's scorer against LLaVA's llava/eval/eval_science_qa.py (commit ce1aa08d): every branch
of its letter rule and of `get_pred_idx`, with the result the script gives."""

from __future__ import annotations

import pytest

from vzexp.data.benchmarks.scienceqa import FAILED, parse_scienceqa, pred_index, scorer

THREE = ["cat", "dog", "bird"]


def rec(prediction, answer="B", options=THREE):
    return {"id": "q", "prediction": prediction, "answer": answer, "meta": {"options": options}}


@pytest.mark.parametrize(
    "text, parsed",
    [
        # branch 1: the output is one of the --options letters A-E
        ("B", "B"),
        ("E", "E"),
        ("F", FAILED),  # not an option letter, too short for branch 2, no sentence
        ("b", FAILED),  # case matters
        ("", FAILED),  # an empty output
        # branch 2: at least 3 characters, an option letter, then ". "
        ("C. cat", "C"),
        ("B. The answer is C.", "B"),  # branch 2 wins before the sentence is looked at
        ("B.", FAILED),  # too short for branch 2
        ("B.cat", FAILED),  # no space after the period
        ("F. fish", FAILED),  # F is not among the options, and no sentence
        ("B\nbecause it barks", FAILED),  # a newline is an ordinary character
        ("(B)", FAILED),
        # branch 3: "The answer is ([A-Z])." matches exactly once
        ("The answer is B.", "B"),
        ("Dogs bark. The answer is B, the dog", "B"),  # the final "." is any character
        ("The answer is F.", "F"),  # any capital letter (get_pred_idx then refuses it)
        ("The answer is B", FAILED),  # nothing after the letter: no match
        ("The answer is B\n.", FAILED),  # "." matches anything but a newline
        ("the answer is B.", FAILED),  # case-sensitive
        ("The answer is A. The answer is B.", FAILED),  # two matches
        ("The answer is B. The answer is B.", FAILED),  # repeated, still two matches
    ],
)
def test_parse_follows_eval_science_qa(text, parsed):
    assert parse_scienceqa(text) == parsed


@pytest.mark.parametrize(
    "answer, num_choices, index",
    [("A", 3, 0), ("C", 3, 2), ("D", 3, -1), ("E", 5, 4), ("F", 5, -1), (FAILED, 5, -1)],
)
def test_get_pred_idx_keeps_letters_of_the_choices_only(answer, num_choices, index):
    assert pred_index(answer, num_choices) == index


@pytest.mark.parametrize(
    "record, correct",
    [
        (rec("B"), 1.0),
        (rec(" B \n"), 1.0),  # stripped, as model_vqa_science.py writes outputs
        (rec("C"), 0.0),  # a valid letter, the wrong one
        (rec("D", "D"), 0.0),  # past the three choices: index -1, never right
        (rec("D", "D", options=THREE + ["fish"]), 1.0),
        (rec("E", "E", options=[]), 1.0),  # without options all five letters count
        (rec("The answer is B."), 1.0),
        (rec("The answer is B"), 0.0),
        (rec("B\nThe dog barks."), 0.0),
        ({"id": "q", "answer": "B", "meta": {"options": THREE}}, 0.0),  # no output: FAILED
    ],
)
def test_sample(record, correct):
    assert scorer.sample(record) == correct


def test_metrics_accuracy_and_empty_set():
    records = [rec("B"), rec("The answer is B"), rec("The answer is B."), rec("A")]
    assert scorer.metrics(records) == {"accuracy": 0.5}
    assert scorer.metrics([]) == {}  # the script divides by zero here
