"""FastV (Chen et al., ECCV 2024): after LLM layer K, keep the visual tokens the last prompt token
attended to most at layer K-1 (mean over heads); the rest are dropped for every later layer.

As the reference's KV-cache version: ranking once, in the prefill; kept tokens keep their
original position ids; decoding continues the unpruned numbering. The reference's defaults are
K = 2 and R = 50% dropped (`ratio=0.5`); `tokens` (the budget) sets the visual tokens kept instead
when ratio is null."""

from __future__ import annotations

from vzexp.compress.llm_side import LLMPruner, Positions, PrunePoint
from vzexp.errors import ConfigError


class FastV(LLMPruner):
    name = "fastv"
    layer_key = "compressor.k"

    def __init__(
        self,
        budget: int | None = None,
        layer: int = -2,
        k: int = 2,
        ratio: float | None = None,
        positions: Positions = "original",
    ):
        super().__init__(budget, layer)
        if ratio is not None and not 0.0 <= ratio < 1.0:
            raise ConfigError("compressor.ratio", ratio, "a dropped fraction in [0, 1), or null")
        self.k, self.ratio, self.positions = k, ratio, positions

    def schedule_given(self) -> bool:
        return self.ratio is not None

    def plan(self, num_visual: int, depth: int) -> list[PrunePoint]:
        keep = self.budget if self.ratio is None else round(num_visual * (1 - self.ratio))
        return [PrunePoint(layer=self.k, keep=min(keep, num_visual), score_layer=self.k - 1)]
