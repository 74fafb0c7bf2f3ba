"""VisionZip (CVPR 2025): dominant tokens by attention + contextual tokens merged by key similarity.

Default behaviour follows the reference exactly (see shared docs/visionzip.md): dominant = CLS plus
the top (D-1) patches by CLS attention summed over heads, emitted in ascending sequence order;
contextual = the remaining tokens' unit-normalised keys, targets at a uniform stride, every other
token assigned to its most similar target, contextual_j = hidden[target_j] + mean(assigned hidden).
"""

from __future__ import annotations

import torch
from torch import Tensor

from vzexp.compress.base import CompressionResult, Compressor
from vzexp.compress.budget import split_budget
from vzexp.encoders.capture import LayerCapture
from vzexp.errors import BudgetError


def dominant_scores(capture: LayerCapture) -> Tensor:
    """(B, T) score per sequence position; CLS (if any) must be kept by the caller."""
    if capture.has_cls:
        return capture.cls_attention
    return capture.received_attention


def select_dominant(capture: LayerCapture, dominant: int) -> tuple[Tensor, Tensor]:
    """Return (index in selection order (B, D), keep mask (B, T))."""
    scores = dominant_scores(capture)
    b, t = scores.shape
    if capture.has_cls:
        top = scores[:, 1:].topk(dominant - 1, dim=1).indices + 1
        index = torch.cat([torch.zeros(b, 1, dtype=top.dtype, device=top.device), top], dim=1)
    else:
        index = scores.topk(dominant, dim=1).indices
    keep = torch.zeros(b, t, dtype=torch.bool, device=scores.device).scatter_(1, index, True)
    return index, keep


def gather_rows(x: Tensor, mask: Tensor, count: int) -> Tensor:
    """Rows of x (B, T, d) where mask is True, in ascending position order -> (B, count, d)."""
    return x[mask].view(x.shape[0], count, x.shape[-1])


def merge_contextual(hidden: Tensor, keys: Tensor, contextual: int) -> tuple[Tensor, Tensor]:
    """Merge M remaining tokens into `contextual` tokens. hidden (B, M, d), keys (B, M, hk).
    Returns (contextual tokens (B, C, d), assignment of the non-target tokens (B, M - C))."""
    m = hidden.shape[1]
    unit = keys / keys.norm(dim=-1, keepdim=True)
    step = max(1, m // contextual)
    targets = torch.arange(0, m, step, device=hidden.device)[:contextual]
    is_target = torch.zeros(m, dtype=torch.bool, device=hidden.device)
    is_target[targets] = True
    others = ~is_target
    similarity = torch.bmm(unit[:, others], unit[:, targets].transpose(1, 2))  # (B, M-C, C)
    assignment = similarity.argmax(dim=2)
    one_hot = torch.zeros(*assignment.shape, contextual, dtype=hidden.dtype, device=hidden.device)
    one_hot.scatter_(2, assignment.unsqueeze(-1), 1)
    counts = one_hot.sum(dim=1).clamp(min=1).unsqueeze(-1)  # (B, C, 1)
    mean_assigned = torch.bmm(one_hot.transpose(1, 2), hidden[:, others]) / counts
    # The reference ADDS the target's own state to the mean of its assigned tokens.
    return hidden[:, targets] + mean_assigned, assignment


class VisionZip(Compressor):
    name = "visionzip"

    def __init__(
        self,
        budget: int | None = None,
        dominant: int | None = None,
        contextual: int | None = None,
        layer: int = -2,
    ):
        super().__init__(layer)
        self.budget, self.dominant, self.contextual = budget, dominant, contextual

    def split(self, num_patches: int, has_cls: bool) -> tuple[int, int]:
        return split_budget(self.budget, num_patches, has_cls, self.dominant, self.contextual)

    def output_tokens(self, num_patches: int, has_cls: bool) -> int:
        return sum(self.split(num_patches, has_cls))

    def compress(self, capture: LayerCapture) -> CompressionResult:
        dominant, contextual = self.split(capture.num_patches, capture.has_cls)
        index, keep = select_dominant(capture, dominant)
        kept = gather_rows(capture.hidden, keep, dominant)
        if contextual == 0:
            return CompressionResult(tokens=kept, index=index)
        rest = capture.hidden.shape[1] - dominant
        ctx, assignment = merge_contextual(
            gather_rows(capture.hidden, ~keep, rest),
            gather_rows(capture.keys, ~keep, rest),
            contextual,
        )
        return CompressionResult(
            tokens=torch.cat([kept, ctx], dim=1), index=index, assignment=assignment
        )

    def describe(self) -> dict:
        return {
            **super().describe(),
            "budget": self.budget,
            "dominant": self.dominant,
            "contextual": self.contextual,
        }


class Dominant(VisionZip):
    """VisionZip's dominant tokens only: the whole budget goes to attention-selected tokens."""

    name = "dominant"

    def __init__(self, budget: int | None = None, dominant: int | None = None, layer: int = -2):
        super().__init__(budget=budget, dominant=dominant, contextual=0, layer=layer)

    def split(self, num_patches: int, has_cls: bool) -> tuple[int, int]:
        if self.dominant is not None:
            return split_budget(None, num_patches, has_cls, self.dominant, 0)
        seq_len = num_patches + int(has_cls)
        if self.budget is None or not 1 <= self.budget <= seq_len:
            raise BudgetError(
                "tokens",
                self.budget,
                f"1..{seq_len} for this encoder ({num_patches} patches{' + CLS' if has_cls else ''})",
            )
        return self.budget, 0
