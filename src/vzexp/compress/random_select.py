"""Random selection: CLS (if any) plus patches drawn uniformly without replacement, per image.

The floor every attention-based strategy must beat at the same budget. Draws come from the
strategy's own seeded draws (vzexp.compress.draws): per sample (seed, id) in an evaluation, so a
run is reproducible whatever its batch size, devices or resumes, and seeds measure noise."""

from __future__ import annotations

import torch

from vzexp.compress.base import CompressionResult, Compressor
from vzexp.compress.budget import check_tokens
from vzexp.compress.draws import SeededDraws
from vzexp.compress.tokens import gather_rows
from vzexp.encoders.capture import LayerCapture


class RandomSelect(Compressor):
    name = "random"

    def __init__(self, budget: int | None = None, seed: int = 0, layer: int = -2):
        super().__init__(layer)
        self.budget, self.seed = budget, seed
        self._draws = SeededDraws(seed)

    def output_tokens(self, num_patches: int, has_cls: bool) -> int:
        seq_len = num_patches + int(has_cls)
        low = 1 + int(has_cls)  # at least one patch besides CLS
        return check_tokens(self.budget, low, seq_len, num_patches, has_cls)

    def compress(self, capture: LayerCapture) -> CompressionResult:
        b, t, _ = capture.hidden.shape
        offset = int(capture.has_cls)
        picks = self.output_tokens(t - offset, capture.has_cls) - offset
        noise = self._draws.uniform(b, t - offset, self.sample_keys).to(capture.hidden.device)
        index = noise.topk(picks, dim=1).indices + offset
        if offset:
            index = torch.cat([torch.zeros(b, 1, dtype=index.dtype, device=index.device), index], 1)
        keep = torch.zeros(b, t, dtype=torch.bool, device=index.device).scatter_(1, index, True)
        return CompressionResult(
            tokens=gather_rows(capture.hidden, keep, index.shape[1]),
            index=index,
            positions=index.sort(dim=1).values,
            kept_tokens=index.shape[1],
        )
