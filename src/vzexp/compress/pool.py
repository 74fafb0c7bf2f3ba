"""Spatial average pooling of the patch grid down to the budget (a training-free baseline).

The 14x14 (or 24x24) grid of feature-layer patches is average-pooled to the rows x cols grid that
`pooled_grid` gives for the budget (adaptive average pooling: windows of near-equal size), rows in
raster order. CLS is dropped, as LLaVA's own feature select does, unless keep_cls."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vzexp.compress.base import CompressionResult
from vzexp.compress.grid import GridStrategy
from vzexp.encoders.capture import LayerCapture, cfg_side


class SpatialPool(GridStrategy):
    name = "pool"

    def compress(self, capture: LayerCapture) -> CompressionResult:
        rows, cols = self.grid(capture.num_patches, capture.has_cls)
        offset = int(capture.has_cls)
        patches = capture.hidden[:, offset:]
        b, n, d = patches.shape
        side = cfg_side(n)
        square = patches.transpose(1, 2).reshape(b, d, side, side)
        pooled = F.adaptive_avg_pool2d(square, (rows, cols)).flatten(2).transpose(1, 2)
        if capture.has_cls and self.keep_cls:
            pooled = torch.cat([capture.hidden[:, :1], pooled], dim=1)
        return CompressionResult(tokens=pooled)
