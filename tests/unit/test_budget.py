"""split_budget: the paper's splits, the proportional rule, overrides and impossible budgets."""

from __future__ import annotations

import pytest

from vzexp.compress.budget import CONTEXTUAL_SHARE, PAPER_SPLITS, split_budget
from vzexp.errors import BudgetError, ConfigError


@pytest.mark.parametrize("tokens, split", [(64, (54, 10)), (128, (108, 20)), (192, (162, 30))])
def test_paper_splits_llava15(tokens, split):
    assert split_budget(tokens, 576, True) == split
    assert PAPER_SPLITS[tokens] == split


def test_contextual_share_is_the_papers():
    assert CONTEXTUAL_SHARE == 10 / 64 == 20 / 128 == 30 / 192


@pytest.mark.parametrize(
    "tokens, num_patches, has_cls, split",
    [
        # contextual = max(1, round(tokens * 5 / 32)), dominant = tokens - contextual
        (64, 729, False, (54, 10)),  # SigLIP 27x27, no CLS
        (32, 196, True, (27, 5)),  # 32 * 5/32 = 5
        (100, 256, True, (84, 16)),  # 15.625 -> 16
        (10, 49, True, (8, 2)),  # 1.5625 -> 2
        (6, 49, True, (5, 1)),  # 0.9375 -> 1
        (3, 16, True, (2, 1)),  # 0.47 -> 0 -> at least 1
        (2, 16, True, (1, 1)),  # smallest budget: CLS + one contextual token
        (576, 576, True, (486, 90)),  # largest budget below the full sequence
        (640, 2304, True, (540, 100)),
    ],
)
def test_proportional_rule(tokens, num_patches, has_cls, split):
    assert split_budget(tokens, num_patches, has_cls) == split
    assert sum(split) == tokens


def test_explicit_overrides():
    # Both given: tokens is ignored.
    assert split_budget(64, 576, True, dominant=60, contextual=4) == (60, 4)
    assert split_budget(None, 576, True, dominant=100, contextual=28) == (100, 28)
    # Only dominant: contextual = tokens - dominant (or 0 without tokens).
    assert split_budget(64, 576, True, dominant=60) == (60, 4)
    assert split_budget(None, 576, True, dominant=60) == (60, 0)
    assert split_budget(64, 576, True, dominant=64) == (64, 0)
    # Only contextual: dominant = tokens - contextual.
    assert split_budget(64, 576, True, contextual=4) == (60, 4)
    assert split_budget(64, 576, True, contextual=0) == (64, 0)
    # The whole sequence as dominant tokens is allowed when asked for explicitly.
    assert split_budget(None, 576, True, dominant=577, contextual=0) == (577, 0)


def check_message(err: BudgetError, key: str, value, *fragments: str):
    assert isinstance(err, ConfigError)
    assert err.key == key
    assert err.value == value
    text = str(err)
    assert f"{key}={value!r}" in text
    for fragment in fragments:
        assert fragment in text, (fragment, text)


@pytest.mark.parametrize("tokens", [0, 1, -5, 577, 600])
def test_impossible_tokens(tokens):
    with pytest.raises(BudgetError) as err:
        split_budget(tokens, 576, True)
    check_message(err.value, "tokens", tokens, "2..576", "576 patches + CLS")


def test_impossible_tokens_without_cls():
    with pytest.raises(BudgetError) as err:
        split_budget(729, 729, False)
    check_message(err.value, "tokens", 729, "2..728")


def test_tokens_missing():
    with pytest.raises(BudgetError) as err:
        split_budget(None, 576, True)
    check_message(err.value, "tokens", None)
    with pytest.raises(BudgetError) as err:
        split_budget(None, 576, True, contextual=10)
    check_message(err.value, "compressor.dominant", None)


def test_contextual_larger_than_remainder():
    # 577 tokens, 570 dominant -> 7 left.
    with pytest.raises(BudgetError) as err:
        split_budget(None, 576, True, dominant=570, contextual=10)
    check_message(err.value, "compressor.contextual", 10, "0..7")
    with pytest.raises(BudgetError) as err:
        split_budget(None, 576, True, dominant=10, contextual=-1)
    check_message(err.value, "compressor.contextual", -1, "0..567")
    # Only dominant given with a budget smaller than it -> negative contextual.
    with pytest.raises(BudgetError) as err:
        split_budget(64, 576, True, dominant=70)
    check_message(err.value, "compressor.contextual", -6)


@pytest.mark.parametrize("dominant", [-1, 578])
def test_impossible_dominant(dominant):
    with pytest.raises(BudgetError) as err:
        split_budget(None, 576, True, dominant=dominant, contextual=10)
    check_message(err.value, "compressor.dominant", dominant, "0..577")


def test_no_token_at_all_is_impossible():
    with pytest.raises(BudgetError) as err:
        split_budget(None, 576, True, dominant=0, contextual=0)
    check_message(err.value, "compressor.dominant", 0, "1..577")


def test_contextual_only_split():
    # dominant = 0 is the contextual-only ablation: every token is merged.
    assert split_budget(10, 576, True, contextual=10) == (0, 10)
    assert split_budget(None, 576, True, dominant=0, contextual=64) == (0, 64)
