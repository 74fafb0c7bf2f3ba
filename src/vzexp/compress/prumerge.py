"""LLaVA-PruMerge and PruMerge+ (Shang et al., 2024), at a fixed budget.

As the reference (42Shawn/LLaVA-PruMerge, clip_encoder.py): attention is ONE head over the full
width of the selection layer's q/k projections (default the last layer, whose input is LLaVA's
feature layer), scaled by width**-0.5, softmax over all tokens; a = the CLS row over the patches.
Each kept patch (a "centre") becomes x_i + sum of a_j * x_j over its `neighbours` most similar
tokens by key cosine (other centres and pruned tokens alike; raw attention weights, not
normalised), and one extra token, sum of a_j * x_j over the pruned tokens, comes last. CLS is not
in the output.

Which patches are centres (budget - 1 of them, so that the output is exactly the budget):
  PruMerge:  the top patches by a, in descending-attention order (the reference's order);
  PruMerge+: the IQR outliers (a > Q3 + 1.5 IQR, per image), descending, then patches spread
             evenly over the rest of the grid in raster order to fill the budget (the reference
             adds a fixed stride of about 3x the outlier count instead).
The reference pools the IQR statistics over the batch; here each image is independent of its
batch. Its adaptive mode (the outlier count as the budget) would give every image its own token
count, which the fixed-budget comparisons do not use."""

from __future__ import annotations

import torch
from torch import Tensor

from vzexp.compress.base import CompressionResult, Compressor
from vzexp.compress.budget import check_tokens
from vzexp.compress.tokens import unit
from vzexp.encoders.capture import LayerCapture
from vzexp.errors import ConfigError


def single_head_cls_attention(cls_query: Tensor, key_states: Tensor) -> Tensor:
    """(B, D), (B, T, D) -> (B, T): softmax(q k^T * D**-0.5) over all T tokens, in fp32."""
    logits = torch.einsum("bd,btd->bt", cls_query.float(), key_states.float())
    return (logits * cls_query.shape[-1] ** -0.5).softmax(dim=-1)


def iqr_outliers(scores: Tensor) -> Tensor:
    """Indices of scores above Q3 + 1.5 * IQR (linear-interpolated quartiles, as numpy's
    percentile), in descending score order."""
    q1, q3 = torch.quantile(scores.float(), torch.tensor([0.25, 0.75], device=scores.device))
    above = (scores > q3 + 1.5 * (q3 - q1)).nonzero().flatten()
    return above[scores[above].argsort(descending=True, stable=True)]


def spread(candidates: Tensor, count: int) -> Tensor:
    """`count` of the (ascending) candidates, evenly spaced from the first to the last."""
    if count <= 0:
        return candidates[:0]
    picks = torch.linspace(0, len(candidates) - 1, count, device=candidates.device).round().long()
    return candidates[picks]


class PruMerge(Compressor):
    name = "prumerge"
    needs_cls = True
    needs_projections = True

    def __init__(
        self, budget: int | None = None, layer: int = -1, plus: bool = False, neighbours: int = 32
    ):
        super().__init__(layer)
        if neighbours < 1:
            raise ConfigError("compressor.neighbours", neighbours, "an integer >= 1")
        self.budget, self.plus, self.neighbours = budget, plus, neighbours

    def output_tokens(self, num_patches: int, has_cls: bool) -> int:
        self.require_cls(has_cls)
        note = ": budget - 1 kept + 1 merged extra token"
        return check_tokens(self.budget, 2, num_patches, num_patches, False, note)

    def centres(self, attention: Tensor) -> Tensor:
        """(N,) attention of one image -> (budget - 1,) centre patch indices."""
        count = self.budget - 1
        if not self.plus:
            return attention.topk(count).indices
        outliers = iqr_outliers(attention)[:count]
        rest = torch.ones_like(attention, dtype=torch.bool)
        rest[outliers] = False
        return torch.cat([outliers, spread(rest.nonzero().flatten(), count - len(outliers))])

    def compress(self, capture: LayerCapture) -> CompressionResult:
        self.output_tokens(capture.num_patches, capture.has_cls)
        attention = single_head_cls_attention(capture.cls_query, capture.key_states)[:, 1:]
        attention = attention.to(capture.hidden.dtype)
        patches = capture.hidden[:, 1:]
        keys = unit(capture.key_states[:, 1:])
        n = patches.shape[1]
        k = min(self.neighbours, n - 1)
        tokens, index = [], []
        for x, a, key in zip(patches, attention, keys):
            idx = self.centres(a)
            similarity = key[idx] @ key.T  # (centres, N)
            similarity[torch.arange(len(idx)), idx] = -float("inf")  # not its own neighbour
            near = similarity.topk(k, dim=1).indices
            updated = x[idx] + (a[near].unsqueeze(-1) * x[near]).sum(dim=1)
            pruned = torch.ones(n, dtype=torch.bool, device=x.device)
            pruned[idx] = False
            extra = (a[pruned].unsqueeze(-1) * x[pruned]).sum(dim=0, keepdim=True)
            tokens.append(torch.cat([updated, extra]))
            index.append(idx + 1)  # sequence positions (CLS = 0)
        index = torch.stack(index)
        extra = torch.full_like(index[:, :1], -1)  # the merged extra token stands nowhere
        return CompressionResult(
            tokens=torch.stack(tokens),
            index=index,
            positions=torch.cat([index, extra], dim=1),
            kept_tokens=index.shape[1],
        )
