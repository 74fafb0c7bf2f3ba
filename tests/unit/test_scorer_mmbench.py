"""MMBench's scorers: VLMEvalKit's `can_infer` as of commit aca64dbb (before c3371551) by default,
and as of commit 2cf2a36c as `scorer_2026`; every branch of `can_infer_option` and
`can_infer_text` in both versions, with the result VLMEvalKit gives, and the circular rule."""

from __future__ import annotations

import pytest

from vzexp.data.benchmarks.mmbench import parse_option_letter, scorer, scorer_2026

OPTIONS = ["cat", "dog", "red cat", "bird"]  # 17 characters: the 2026 text rule stops past 34
LONG = "It is a dog that sits on the grass"  # 34 characters
LONGER = "It is a dog that sits on the grass."  # 35


@pytest.mark.parametrize(
    "text, old, new",
    [
        # API failure: no verdict from the letter rules, the option text decides (2026: the
        # output is longer than twice the options, so the text rule gives none either)
        ("Failed to obtain answer via API: dog", "B", None),
        # a refusal phrase: "Z", final, whatever follows
        ("Cannot determine the answer, maybe B", None, None),
        ("I can't process this file.", None, None),
        # exactly one option letter among the tokens
        ("B", "B", "B"),
        ("(B)", "B", "B"),
        ("B.", "B", "B"),
        ("**B**", "B", "B"),
        ("I pick B", "B", "B"),
        ("The answer is A, a cat", "A", "A"),  # the quantifier guard is off without VERBOSE
        # ... 2026: only when the letter is among the last four tokens
        ("B is right as the animal barks", "B", None),  # 7 tokens, B first; text rule: none
        ("B is right because it barks, said the keeper", "B", None),
        # no option letter but a "Z" token: "Z", final (no text rule, no regex)
        ("Z", None, None),
        ("Z, it is a dog", None, None),
        ("Z. The answer is B", "B", "B"),  # an option letter is looked for before "Z"
        # several letters: no verdict -> text rule (2026: first the "answer is" regex)
        ("A or B", None, None),
        ("A cat is shown, so B", "A", "A"),  # text rule: only "cat" occurs
        ("A is wrong; the answer is B", None, "B"),
        ("The correct answer is **B**, not A", None, "B"),
        # no letter, no Z: text rule (2026: the regex first, case-insensitive)
        ("the answer is b", None, "B"),
        ("The answer is d", None, "D"),  # D is an option here
        ("It is a dog", "B", "B"),
        (LONG, "B", "B"),  # exactly twice the options' length: the text rule still runs
        (LONGER, "B", None),  # past it: 2026 gives no verdict
        ("a red cat", None, None),  # "cat" and "red cat" both occur
        ("b", None, None),
        ("E", None, None),  # not an option
        ("", None, None),
    ],
)
def test_can_infer_both_versions(text, old, new):
    assert parse_option_letter(text, OPTIONS) == old
    assert parse_option_letter(text, OPTIONS, "2026") == new


def test_the_2026_regex_names_only_present_options():
    three = ["cat", "dog", "bird"]
    assert parse_option_letter("the answer is d", three, "2026") is None
    assert parse_option_letter("the answer is c", three, "2026") == "C"


def test_missing_options_are_skipped_like_nan_cells():
    # build_choices keeps the letters of present cells only, later ones included
    assert parse_option_letter("C", ["cat", None, "cow"]) == "C"
    assert parse_option_letter("B", ["cat", float("nan"), "cow"]) is None
    assert parse_option_letter("a cow", ["cat", "", "cow"]) == "C"


def rotations(circular_id, preds, golds):
    return [
        {
            "id": f"{circular_id}-{k}",
            "prediction": p,
            "answer": g,
            "meta": {"options": OPTIONS, "circular_id": circular_id},
        }
        for k, (p, g) in enumerate(zip(preds, golds))
    ]


def test_circular_evaluation():
    records = (
        # question 1: every rotation right -> counts
        rotations(1, ["A", "(B)", "C.", "The answer is D"], ["A", "B", "C", "D"])
        # question 2: 3 of 4 rotations right -> does not count
        + rotations(2, ["B", "C", "D", "B"], ["B", "C", "D", "A"])
        # question 3: an output the rules cannot map counts wrong (no GPT judge)
        + rotations(3, ["C", "I do not know"], ["C", "A"])
        # question 4: no circular_id -> its own group
        + [{"id": "solo", "prediction": "dog", "answer": "B", "meta": {"options": OPTIONS}}]
    )
    out = scorer.metrics(records)
    assert out["accuracy"] == pytest.approx(2 / 4)  # questions 1 and 4
    assert out["accuracy_single"] == pytest.approx(9 / 11)  # 4 + 3 + 1 + 1 right of 11 rows
    assert [scorer.sample(r) for r in records[4:8]] == [1, 1, 1, 0]
    assert scorer.metrics([]) == {} and scorer_2026.metrics([]) == {}


def test_the_versions_differ_on_a_circular_question():
    records = rotations(5, ["B", "A is wrong; the answer is B"], ["B", "B"])
    assert scorer.metrics(records)["accuracy"] == 0.0
    assert scorer_2026.metrics(records)["accuracy"] == 1.0
