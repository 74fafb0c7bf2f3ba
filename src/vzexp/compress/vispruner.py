"""VisPruner (Zhang et al., ICCV 2025): important tokens by CLS attention + diverse tokens.

As the reference (Theia-4869/VisPruner): important = the top int(budget * important_ratio)
patches by CLS attention at the feature layer (mean over heads; we sum, the same ranking);
the other patches, in descending attention, are thinned to the rest of the budget in rounds
that each drop at most 8: split the list alternately into A (even places) and B (odd), score
each A token by its highest cosine to a B token (unit feature-layer states), drop the r most
redundant A tokens, and continue on [the surviving A, most redundant first] + [B]. The kept
tokens (important and diverse) reach the LLM in raster order; CLS is not among them."""

from __future__ import annotations

import torch

from vzexp.compress.base import CompressionResult, Compressor
from vzexp.compress.budget import check_tokens
from vzexp.compress.tokens import gather_rows, keep_mask, take, unit
from vzexp.encoders.capture import LayerCapture
from vzexp.errors import ConfigError

DROP_PER_ROUND = 8


def thin_diverse(features: torch.Tensor, order: torch.Tensor, keep: int) -> torch.Tensor:
    """features (B, N, d) unit rows; order (B, R) candidate indices -> (B, keep) indices."""
    residual = order
    while residual.shape[1] > keep:
        r = min(DROP_PER_ROUND, residual.shape[1] - keep)
        a, b = residual[:, ::2], residual[:, 1::2]
        if b.shape[1] == 0:  # a single candidate left and nothing to compare it with
            return residual[:, :keep]
        score = torch.bmm(take(features, a), take(features, b).transpose(1, 2)).amax(dim=2)
        ranked = score.argsort(dim=1, descending=True, stable=True)
        residual = torch.cat([a.gather(1, ranked[:, r:]), b], dim=1)
    return residual


class VisPruner(Compressor):
    name = "vispruner"
    needs_cls = True

    def __init__(self, budget: int | None = None, layer: int = -2, important_ratio: float = 0.5):
        super().__init__(layer)
        if not 0.0 <= important_ratio <= 1.0:
            raise ConfigError("compressor.important_ratio", important_ratio, "a number in [0, 1]")
        self.budget, self.important_ratio = budget, important_ratio

    def output_tokens(self, num_patches: int, has_cls: bool) -> int:
        self.require_cls(has_cls)
        return check_tokens(self.budget, 1, num_patches, num_patches, False)

    def compress(self, capture: LayerCapture) -> CompressionResult:
        budget = self.output_tokens(capture.num_patches, capture.has_cls)
        important = int(budget * self.important_ratio)
        order = capture.cls_attention[:, 1:].argsort(dim=1, descending=True, stable=True)
        patches = capture.hidden[:, 1:]
        diverse = thin_diverse(unit(patches), order[:, important:], budget - important)
        index = torch.cat([order[:, :important], diverse], dim=1)
        tokens = gather_rows(patches, keep_mask(index, patches.shape[1]), budget)
        at = (index + 1).sort(dim=1).values
        return CompressionResult(tokens=tokens, index=index + 1, positions=at, kept_tokens=budget)
