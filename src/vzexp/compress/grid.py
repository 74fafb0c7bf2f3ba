"""Strategies that keep a smaller grid (pooling, downsampling): the budget becomes rows x cols."""

from __future__ import annotations

from vzexp.compress.base import Compressor
from vzexp.compress.budget import pooled_grid
from vzexp.encoders.capture import cfg_side


class GridStrategy(Compressor):
    """rows x cols patches (+ CLS if keep_cls), from `pooled_grid` of the budget."""

    grid_based = True  # needs a square patch grid (families with other grids refuse it)

    def __init__(self, budget: int | None = None, layer: int = -2, keep_cls: bool = False):
        super().__init__(layer)
        self.budget, self.keep_cls = budget, keep_cls

    def grid(self, num_patches: int, has_cls: bool) -> tuple[int, int]:
        cls = int(has_cls and self.keep_cls)
        budget = None if self.budget is None else self.budget - cls
        return pooled_grid(budget, cfg_side(num_patches))

    def output_tokens(self, num_patches: int, has_cls: bool) -> int:
        rows, cols = self.grid(num_patches, has_cls)
        return rows * cols + int(has_cls and self.keep_cls)
