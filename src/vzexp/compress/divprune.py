"""DivPrune (Alvar et al., CVPR 2025): the visual tokens that solve a max-min diversity problem.

As the reference: distance = 1 - cosine between the visual tokens in the LLM's input space (after
the projector; `space=vision` measures it on the tower's features instead), greedy selection:
first the token whose nearest other token is farthest, then repeatedly the token whose distance
to the selected set (its minimum distance to any selected token) is largest, ties to the lowest
index. The kept tokens go to the LLM in their original (raster) order. Patches only: CLS is
dropped, as LLaVA's own feature select does. Unlike the reference, a token already selected is
never picked twice (which it could be among exact duplicates, e.g. a flat background)."""

from __future__ import annotations

from typing import Literal

import torch

from vzexp.compress.base import CompressionResult, Compressor
from vzexp.compress.budget import check_tokens
from vzexp.compress.tokens import cosine, gather_rows, keep_mask
from vzexp.encoders.capture import LayerCapture
from vzexp.errors import ConfigError


def max_min_diverse(distance: torch.Tensor, count: int) -> torch.Tensor:
    """distance (B, N, N) -> (B, count) indices, in selection order."""
    b, n, _ = distance.shape
    rows = torch.arange(b, device=distance.device)
    nearest_other = distance.topk(2, dim=1, largest=False).values[:, 1]  # (B, N)
    chosen = [nearest_other.argmax(dim=1)]
    to_set = distance[rows, chosen[0]]  # (B, N): distance to the selected set
    taken = torch.zeros(b, n, dtype=torch.bool, device=distance.device)
    for _ in range(count - 1):
        taken[rows, chosen[-1]] = True
        nxt = to_set.masked_fill(taken, -float("inf")).argmax(dim=1)
        chosen.append(nxt)
        to_set = torch.minimum(to_set, distance[rows, nxt])
    return torch.stack(chosen, dim=1)


class DivPrune(Compressor):
    name = "divprune"

    def __init__(
        self,
        budget: int | None = None,
        layer: int = -2,
        space: Literal["projected", "vision"] = "projected",
    ):
        super().__init__(layer)
        self.budget, self.space = budget, space
        # space=projected reads the projector, which projector tuning changes (no feature cache)
        self.selects_after_projector = space == "projected"

    def output_tokens(self, num_patches: int, has_cls: bool) -> int:
        return check_tokens(self.budget, 1, num_patches, num_patches, False)

    def compress(self, capture: LayerCapture) -> CompressionResult:
        count = self.output_tokens(capture.num_patches, capture.has_cls)
        offset = int(capture.has_cls)
        patches = capture.hidden[:, offset:]
        if self.space == "projected":
            if capture.project is None:
                raise ConfigError(
                    "compressor.space",
                    self.space,
                    "vision when there is no model projector (a bare tower)",
                )
            features = capture.project(patches)
        else:
            features = patches
        distance = 1 - cosine(features.float(), features.float())
        index = max_min_diverse(distance, count)
        tokens = gather_rows(patches, keep_mask(index, patches.shape[1]), count)
        at = (index + offset).sort(dim=1).values
        return CompressionResult(
            tokens=tokens, index=index + offset, positions=at, kept_tokens=count
        )
