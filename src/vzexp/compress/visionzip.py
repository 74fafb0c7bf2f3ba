"""VisionZip (CVPR 2025): dominant tokens by attention + contextual tokens merged by key similarity.

The defaults follow the reference exactly (see shared docs/visionzip.md): dominant = CLS plus
the top (D-1) patches by CLS attention summed over heads (towers without CLS: the D tokens that
receive the most attention), emitted in ascending sequence order; contextual = the remaining
tokens' unit-normalised keys, targets at a uniform stride, every other token assigned to its most
similar target, contextual_j = hidden[target_j] + mean(assigned hidden).

The paper's ablations are parameters of the same class, not copies:
  dominant=0 (contextual only), contextual=0 (dominant only, also `compressor=dominant`),
  merge_space (keys | hidden), target_pick (uniform | random | similarity), merge (add | mean),
  keep_cls, layer, and the dominant/contextual split at a fixed total.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from vzexp.compress.base import CompressionResult, Compressor
from vzexp.compress.budget import check_tokens, split_budget
from vzexp.compress.draws import SeededDraws
from vzexp.compress.tokens import gather_rows, keep_mask, unit, with_cls
from vzexp.encoders.capture import LayerCapture

MergeSpace = Literal["keys", "hidden"]
TargetPick = Literal["uniform", "random", "similarity"]
MergeRule = Literal["add", "mean"]


def dominant_scores(capture: LayerCapture) -> Tensor:
    """(B, T) score per sequence position; CLS (if any) must be kept by the caller."""
    if capture.has_cls:
        return capture.cls_attention
    return capture.received_attention


def select_dominant(
    scores: Tensor, dominant: int, keep_cls: bool, has_cls: bool
) -> tuple[Tensor, Tensor]:
    """Return (index in selection order (B, D), keep mask (B, T)). With a CLS tower and keep_cls,
    CLS comes first and the top (D-1) patches follow in topk order; otherwise the top D patches."""
    b, t = scores.shape
    offset = int(has_cls)
    if dominant == 0:
        index = torch.zeros(b, 0, dtype=torch.long, device=scores.device)
    elif has_cls and keep_cls:
        index = with_cls(scores[:, 1:].topk(dominant - 1, dim=1).indices + 1)
    else:
        index = scores[:, offset:].topk(dominant, dim=1).indices + offset
    return index, keep_mask(index, t)


def pick_targets(
    features: Tensor, contextual: int, rule: str, draw: Callable[[int, int], Tensor] | None
):
    """Positions (B, C), ascending, of the contextual targets among M remaining tokens.
    uniform: 0, step, 2*step, ... with step = max(1, M // C) (the reference);
    random: C positions drawn uniformly per image (draw(rows, size): uniform noise); similarity: greedy farthest-point cover of the
    unit features, starting from the densest token (highest mean similarity to the others)."""
    b, m, _ = features.shape
    device = features.device
    if rule == "uniform":
        step = max(1, m // contextual)
        return torch.arange(0, m, step, device=device)[:contextual].expand(b, -1)
    if rule == "random":
        noise = draw(b, m).to(device)
        return noise.topk(contextual, dim=1).indices.sort(dim=1).values
    similarity = torch.bmm(features, features.transpose(1, 2))  # (B, M, M)
    chosen = [similarity.mean(dim=2).argmax(dim=1)]
    closest = similarity.gather(1, chosen[0].view(b, 1, 1).expand(-1, 1, m)).squeeze(1)
    taken = torch.zeros(b, m, dtype=torch.bool, device=device)
    for _ in range(contextual - 1):
        taken[torch.arange(b), chosen[-1]] = True
        nxt = closest.masked_fill(taken, float("inf")).argmin(dim=1)
        chosen.append(nxt)
        closest = torch.maximum(closest, similarity[torch.arange(b), nxt])
    return torch.stack(chosen, dim=1).sort(dim=1).values


def merge_contextual(
    hidden: Tensor,
    features: Tensor,
    contextual: int,
    target_pick: str = "uniform",
    merge: str = "add",
    draw: Callable[[int, int], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Merge M remaining tokens into `contextual` tokens. hidden (B, M, d); features (B, M, f),
    the space similarity is measured in (keys by default). Returns (contextual tokens (B, C, d),
    assignment of the non-target tokens (B, M - C), in ascending position order, and the targets'
    positions (B, C))."""
    b, m, d = hidden.shape
    features = unit(features)
    targets = pick_targets(features, contextual, target_pick, draw)  # (B, C)
    is_target = keep_mask(targets, m)
    rows = torch.arange(b, device=hidden.device).unsqueeze(1)
    others = ~is_target
    similarity = torch.bmm(
        gather_rows(features, others, m - contextual), features[rows, targets].transpose(1, 2)
    )  # (B, M-C, C)
    assignment = similarity.argmax(dim=2)
    one_hot = torch.zeros(b, m - contextual, contextual, dtype=hidden.dtype, device=hidden.device)
    one_hot.scatter_(2, assignment.unsqueeze(-1), 1)
    counts = one_hot.sum(dim=1).unsqueeze(-1)  # (B, C, 1)
    summed = torch.bmm(one_hot.transpose(1, 2), gather_rows(hidden, others, m - contextual))
    target_hidden = hidden[rows, targets]
    if merge == "mean":  # a proper average of the target and its assigned tokens (ablation)
        return (target_hidden + summed) / (counts + 1), assignment, targets
    # The reference ADDS the target's own state to the mean of its assigned tokens.
    return target_hidden + summed / counts.clamp(min=1), assignment, targets


def contextual_groups(keep: Tensor, rest: Tensor, targets: Tensor, assignment: Tensor) -> Tensor:
    """(B, T) per sequence position: -1 kept (dominant), j >= 0 merged into contextual token j,
    -2 neither (CLS when it is dropped). For overlays and inspection."""
    b, t = keep.shape
    groups = torch.full((b, t), -2, dtype=torch.long, device=keep.device)
    groups[keep] = -1
    rest_pos = rest.nonzero()[:, 1].view(b, -1)  # (B, M) ascending
    is_target = torch.zeros_like(rest_pos, dtype=torch.bool).scatter_(1, targets, True)
    rows = torch.arange(b, device=keep.device).unsqueeze(1)
    contextual = torch.arange(targets.shape[1], device=keep.device).expand(b, -1)
    groups[rows, rest_pos.gather(1, targets)] = contextual
    groups[rows, rest_pos[~is_target].view(b, -1)] = assignment
    return groups


class VisionZip(Compressor):
    name = "visionzip"

    def __init__(
        self,
        budget: int | None = None,
        dominant: int | None = None,
        contextual: int | None = None,
        layer: int = -2,
        merge_space: MergeSpace = "keys",
        target_pick: TargetPick = "uniform",
        merge: MergeRule = "add",
        keep_cls: bool = True,
        seed: int = 0,
    ):
        super().__init__(layer)
        self.budget, self.dominant, self.contextual = budget, dominant, contextual
        self.merge_space, self.target_pick, self.merge = merge_space, target_pick, merge
        self.keep_cls, self.seed = keep_cls, seed
        self._draws = SeededDraws(seed)

    def split(self, num_patches: int, has_cls: bool) -> tuple[int, int]:
        # Without keep_cls the CLS token is neither kept nor merged: the tower looks CLS-free.
        counted_cls = has_cls and self.keep_cls
        return split_budget(self.budget, num_patches, counted_cls, self.dominant, self.contextual)

    def output_tokens(self, num_patches: int, has_cls: bool) -> int:
        return sum(self.split(num_patches, has_cls))

    def compress(self, capture: LayerCapture) -> CompressionResult:
        dominant, contextual = self.split(capture.num_patches, capture.has_cls)
        index, keep = select_dominant(
            dominant_scores(capture), dominant, self.keep_cls, capture.has_cls
        )
        kept = gather_rows(capture.hidden, keep, dominant)
        kept_at = index.sort(dim=1).values  # gather_rows keeps ascending sequence order
        if contextual == 0:
            return CompressionResult(
                tokens=kept, index=index, positions=kept_at, kept_tokens=dominant
            )
        rest = ~keep
        if capture.has_cls and not self.keep_cls:
            rest[:, 0] = False
        count = int(rest[0].sum())
        space = capture.keys if self.merge_space == "keys" else capture.hidden
        ctx, assignment, targets = merge_contextual(
            gather_rows(capture.hidden, rest, count),
            gather_rows(space, rest, count),
            contextual,
            self.target_pick,
            self.merge,
            lambda rows, size: self._draws.uniform(rows, size, self.sample_keys),
        )
        rest_at = rest.nonzero()[:, 1].view(rest.shape[0], -1)  # (B, M) ascending
        return CompressionResult(
            tokens=torch.cat([kept, ctx], dim=1),
            index=index,
            assignment=assignment,
            groups=contextual_groups(keep, rest, targets, assignment),
            positions=torch.cat([kept_at, rest_at.gather(1, targets)], dim=1),
            kept_tokens=dominant,
        )


class Dominant(VisionZip):
    """VisionZip's dominant tokens only: the whole budget goes to attention-selected tokens."""

    name = "dominant"

    def __init__(
        self,
        budget: int | None = None,
        dominant: int | None = None,
        layer: int = -2,
        keep_cls: bool = True,
    ):
        super().__init__(
            budget=budget, dominant=dominant, contextual=0, layer=layer, keep_cls=keep_cls
        )

    def split(self, num_patches: int, has_cls: bool) -> tuple[int, int]:
        counted_cls = has_cls and self.keep_cls
        if self.dominant is not None:
            return split_budget(None, num_patches, counted_cls, self.dominant, 0)
        seq_len = num_patches + int(counted_cls)
        return check_tokens(self.budget, 1, seq_len, num_patches, counted_cls), 0
