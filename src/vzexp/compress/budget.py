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
    if tokens is not None and dominant + contextual != tokens:
        # both given explicitly and they disagree with the budget: never guess which one is meant
        raise BudgetError(
            "compressor.dominant",
            dominant,
            f"dominant + contextual = tokens, but {dominant} + {contextual} != {tokens}; set "
            f"tokens={dominant + contextual}, or give only one of dominant/contextual",
        )
    return dominant, contextual


def check_tokens(
    budget: int | None, low: int, high: int, num_patches: int, with_cls: bool, note: str = ""
) -> int:
    """The budget itself if low <= budget <= high, else the one-line BudgetError naming `tokens`."""
    if budget is None or not low <= budget <= high:
        encoder = f"{num_patches} patches{' + CLS' if with_cls else ''}"
        raise BudgetError("tokens", budget, f"{low}..{high} for this encoder ({encoder}){note}")
    return budget


def check_split(dominant: int, contextual: int, num_patches: int, has_cls: bool) -> None:
    seq_len = num_patches + int(has_cls)
    # At least one dominant token (the CLS token itself when present), unless every token is
    # merged into contextual ones (the contextual-only ablation).
    low = 0 if contextual > 0 else 1
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


def pooled_grid(tokens: int | None, grid: int, key: str = "tokens") -> tuple[int, int]:
    """The (rows, cols) grid a spatial strategy (pooling, downsampling) gives for a budget: the
    largest rows x cols <= tokens with rows <= cols <= 2 * rows and both within the tower's grid,
    the squarest on ties (64 -> 8x8, 128 -> 8x16, 192 -> 12x16, 24 -> 4x6, 48 -> 6x8)."""
    if tokens is None or not 1 <= tokens <= grid * grid:
        raise BudgetError(key, tokens, f"1..{grid * grid} for this encoder ({grid}x{grid} patches)")
    best = (1, 1)
    for rows in range(1, grid + 1):
        for cols in range(rows, min(2 * rows, grid) + 1):
            size = rows * cols
            if size > tokens:
                break
            if size > best[0] * best[1] or (
                size == best[0] * best[1] and cols - rows < best[1] - best[0]
            ):
                best = (rows, cols)
    return best
