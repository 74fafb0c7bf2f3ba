"""SEED-Bench's scorers: lmms-eval's seedbench utils.py (commit e3c9cd6a) by default, LLaVA's
scripts/convert_seed_for_submission.py (commit ce1aa08d) as `llava_scorer`; every branch of
each rule, with the result the upstream code gives."""

from __future__ import annotations

import pytest

from vzexp.data.benchmarks.seed import llava_scorer, parse_seed_letter, scorer


def rec(prediction, answer="B"):
    return {"id": "q", "prediction": prediction, "answer": answer, "meta": {}}


@pytest.mark.parametrize(
    "text, pred",
    [
        ("B", "B"),  # one character: kept as is
        ("", ""),  # empty: kept as is
        ("B. cat", "B"),  # longer: its first character
        ("  b) cat \n", "b"),  # stripped first
        ("\nB\nC", "B"),
        ("(B)", "("),
        ("The answer is B.", "T"),
    ],
)
def test_seed_process_result(text, pred):
    assert parse_seed_letter(text) == pred


@pytest.mark.parametrize(
    "record, lmms_eval, llava",
    [
        (rec("B"), 1.0, 1.0),
        (rec("b"), 1.0, 0.0),  # lmms-eval compares lower-cased; LLaVA exactly
        (rec("B. cat"), 1.0, 0.0),
        (rec("b) cat"), 1.0, 0.0),
        (rec(" B\n"), 1.0, 1.0),  # both strip the output
        (rec("B\nC"), 1.0, 0.0),
        (rec("(B)"), 0.0, 0.0),
        (rec("A"), 0.0, 0.0),
        (rec(""), 0.0, 0.0),
        (rec("The answer is B."), 0.0, 0.0),
        (rec("B", answer=" b "), 1.0, 0.0),  # lmms-eval also strips and lower-cases the gold
    ],
)
def test_both_rules(record, lmms_eval, llava):
    assert scorer.sample(record) == lmms_eval
    assert llava_scorer.sample(record) == llava


def test_metrics_accuracy_and_empty_set():
    records = [rec("B"), rec("b"), rec("(B)"), rec("B.")]
    assert scorer.metrics(records) == {"accuracy": 0.75}
    assert llava_scorer.metrics(records) == {"accuracy": 0.25}
    assert scorer.metrics([]) == {} and llava_scorer.metrics([]) == {}  # upstream: 0 / 0
