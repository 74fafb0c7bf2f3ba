"""Image downsampling to the budget (a baseline VTC-Bench found stronger than many methods).

The model-resolution image is resized (bilinear, antialiased) to rows x cols patches, the grid
`pooled_grid` gives for the budget, and the tower runs on it with its position embeddings
interpolated. The tower's output at the feature layer is what the LLM receives (CLS dropped
unless keep_cls). Resizing the normalised pixels equals resizing the image first: both the
resize and the normalisation are linear per channel."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from vzexp.compress.base import CompressionResult
from vzexp.compress.grid import GridStrategy
from vzexp.encoders.capture import LayerCapture, capture_layer, tower_info


class Downsample(GridStrategy):
    name = "downsample"

    def capture(
        self, vision_model: nn.Module, pixel_values: Tensor, feature_layer: int | None = None
    ) -> LayerCapture:
        info = tower_info(vision_model)
        rows, cols = self.grid(info.num_patches, info.has_cls)
        size = (rows * info.patch_size, cols * info.patch_size)
        # in float32: torch has no antialiased resize for bfloat16 on the CPU
        small = F.interpolate(
            pixel_values.float(), size=size, mode="bilinear", antialias=True, align_corners=False
        ).to(pixel_values.dtype)
        return capture_layer(
            vision_model,
            small,
            layer=self.layer,
            feature_layer=feature_layer,
            interpolate_pos_encoding=True,
        )

    def compress(self, capture: LayerCapture) -> CompressionResult:
        drop_cls = capture.has_cls and not self.keep_cls
        return CompressionResult(tokens=capture.hidden[:, 1:] if drop_cls else capture.hidden)
