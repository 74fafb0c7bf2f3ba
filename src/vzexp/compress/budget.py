"""Map the user's `tokens` budget to VisionZip's (dominant, contextual) split.

The paper's LLaVA-1.5 budgets are 64 = 54 + 10, 128 = 108 + 20 and 192 = 162 + 30: the contextual
share is 10/64 = 5/32 of the budget in all three. We apply that same share to any budget and grid
(contextual = round(tokens * 5 / 32), Python rounding: halves go to the even number, at least 1;
dominant takes the rest, the CLS token counted in
it), so the paper's three budgets come out exactly and other grids scale proportionally.
"""

from __future__ import annotations

from vzexp.errors import BudgetError

CONTEXTUAL_SHARE = 5 / 32
PAPER_SPLITS = {64: (54, 10), 128: (108, 20), 192: (162, 30)}


def split_budget(
    tokens: int | None,
    num_patches: int,
    has_cls: bool,
    dominant: int | None = None,
    contextual: int | None = None,
) -> tuple[int, int]:
    """Return (dominant, contextual) for one image; explicit values win over `tokens`."""
    seq_len = num_patches + int(has_cls)
    if dominant is None and contextual is None:
        if tokens is None:
            raise BudgetError(
                "tokens",
                None,
                "a positive number of visual tokens, or compressor.dominant/contextual",
            )
        if not 2 <= tokens < seq_len:
            raise BudgetError(
                "tokens",
                tokens,
                f"2..{seq_len - 1} for this encoder ({num_patches} patches{' + CLS' if has_cls else ''})",
            )
        contextual = max(1, round(tokens * CONTEXTUAL_SHARE))
        dominant = tokens - contextual
    elif dominant is None:
        if tokens is None:
            raise BudgetError(
                "compressor.dominant",
                None,
                "set it, or set tokens so that dominant = tokens - contextual",
            )
        dominant = tokens - contextual
    elif contextual is None:
        contextual = 0 if tokens is None else tokens - dominant
    check_split(dominant, contextual, num_patches, has_cls)
    return dominant, contextual


def check_split(dominant: int, contextual: int, num_patches: int, has_cls: bool) -> None:
    seq_len = num_patches + int(has_cls)
    low = 1  # at least one dominant token (the CLS token itself when present)
    if not low <= dominant <= seq_len:
        raise BudgetError(
            "compressor.dominant", dominant, f"{low}..{seq_len} (tokens kept, CLS counted)"
        )
    remaining = seq_len - dominant
    if not 0 <= contextual <= remaining:
        raise BudgetError(
            "compressor.contextual",
            contextual,
            f"0..{remaining}: at most the {remaining} tokens left after {dominant} dominant ones",
        )
