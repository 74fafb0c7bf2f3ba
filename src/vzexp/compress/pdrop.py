"""PyramidDrop (Xing et al., CVPR 2025): visual tokens dropped in stages through the LLM.

As the reference: at each stage boundary (LLaVA-1.5's 32 layers: before layers 8, 16, 24) the
next layer's own q/k rank the visual tokens by the attention of the last instruction token
(mean over heads), the top ones are kept in their order, positions are renumbered contiguously.
The reference keeps ratio**s of the image tokens after stage s (ratio = 0.5: 576 -> 288 -> 144
-> 72). Here `tokens` is what the last stage keeps and the per-stage ratio follows from it
(ratio = (tokens / N) ** (1 / stages)) unless `ratio` is set. `layers: null` puts the stage
boundaries at 1/4, 1/2 and 3/4 of the LLM's depth, as the reference does for 32 layers."""

from __future__ import annotations

from vzexp.compress.llm_side import LLMPruner, Positions, PrunePoint
from vzexp.errors import ConfigError

STAGE_FRACTIONS = (0.25, 0.5, 0.75)


def scaled_layers(fractions, depth: int) -> list[int]:
    """Layer positions at fractions of the depth, strictly increasing, within 1..depth-1."""
    layers: list[int] = []
    for f in fractions:
        layer = max(round(depth * f), layers[-1] + 1 if layers else 1)
        if layer <= depth - 1:
            layers.append(layer)
    return layers


class PyramidDrop(LLMPruner):
    name = "pdrop"

    def __init__(
        self,
        budget: int | None = None,
        layer: int = -2,
        layers: list[int] | None = None,
        ratio: float | None = None,
        positions: Positions = "compact",
    ):
        super().__init__(budget, layer)
        if ratio is not None and not 0.0 < ratio <= 1.0:
            raise ConfigError(
                "compressor.ratio", ratio, "a kept fraction per stage in (0, 1], or null"
            )
        self.layers, self.ratio, self.positions = layers, ratio, positions

    def schedule_given(self) -> bool:
        return self.ratio is not None

    def plan(self, num_visual: int, depth: int) -> list[PrunePoint]:
        layers = list(self.layers) if self.layers else scaled_layers(STAGE_FRACTIONS, depth)
        stages = len(layers)
        ratio = self.ratio if self.ratio is not None else (self.budget / num_visual) ** (1 / stages)
        keeps = [max(1, int(num_visual * ratio**s)) for s in range(1, stages + 1)]
        if self.ratio is None:
            keeps[-1] = self.budget  # exact, whatever the rounding of the root
        return [PrunePoint(layer=at, keep=k, score_layer=at) for at, k in zip(layers, keeps)]
