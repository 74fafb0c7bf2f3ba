"""LLaVA-NeXT and LLaVA-OneVision (anyres): every view of an image compressed with its own budget.

The processor turns an image into a base view (the whole image, resized) plus crops tiled over the
anyres grid; transformers then reshapes the crops' features into the full high-resolution grid,
removes the padding rows/columns and appends an image-newline token to every row. With compressed
views that grid no longer exists, so the layout is built from the kept tokens' own positions
(`CompressionResult.positions`):

  layout=reference (the default, as the VisionZip reference lays out LLaVA-NeXT): the base view's
    tokens first, unchanged; then every crop's kept patches in row-major order of the whole tiled
    grid; then the crops' kept CLS tokens; then all crops' merged (contextual) tokens; no newlines.
  layout=newline: the model's own spatial_unpad layout restricted to the kept patches: kept patches
    that fall in the padding are dropped (the model never shows those), an image-newline follows
    every grid row that keeps a patch; then CLS and merged tokens as above.

Strategies that do not say where their tokens stand (pool, ToMe) give each crop's tokens in crop
order. `tokens` is the budget per view: an image's total is views x tokens (reported as
visual_tokens). compressor=none is the model's own path, unchanged."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from vzexp.compress.base import CompressionResult, Compressor
from vzexp.compress.none import NoCompression
from vzexp.encoders.capture import tower_info
from vzexp.errors import ConfigError
from vzexp.models.family import Encoded, Family

LAYOUTS = ("reference", "newline")


def unpadded_box(height: int, width: int, original: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the rows/columns transformers' unpad_image keeps in a
    height x width feature grid of an image whose original size is (h, w)."""
    orig_h, orig_w = int(original[0]), int(original[1])
    if orig_w / orig_h > width / height:
        new_h = int(round(orig_h * (width / orig_w), 7))
        pad = (height - new_h) // 2
        return pad, height - pad, 0, width
    new_w = int(round(orig_w * (height / orig_h), 7))
    pad = (width - new_w) // 2
    return 0, height, pad, width - pad


class LlavaNextFamily(Family):
    name = "llava_next"
    model_types = ("llava_next",)
    image_inputs = ("pixel_values", "image_sizes")

    processor_name = "LlavaNextProcessor"

    def __init__(self, layout: str = "reference"):
        if layout not in LAYOUTS:
            raise ConfigError("model.layout", layout, f"one of {', '.join(LAYOUTS)}")
        super().__init__(layout)

    def model_class(self):
        from transformers import LlavaNextForConditionalGeneration

        return LlavaNextForConditionalGeneration

    def check(self, model, compressor: Compressor) -> None:
        info = tower_info(self.vision_tower(model))
        compressor.output_tokens(info.num_patches, info.has_cls)  # per view
        return None  # views per image vary with the image's size

    def views(self, model, images: dict[str, Any]) -> list[int]:
        from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

        return [
            image_size_to_num_patches(
                image_size=size,
                grid_pinpoints=model.config.image_grid_pinpoints,
                patch_size=model.config.vision_config.image_size,
            )
            for size in images["image_sizes"]
        ]

    def full_lengths(self, model, images: dict[str, Any]) -> list[int]:
        """Each image's token count in the model's own layout (base view, unpadded crop rows,
        one image-newline per row), as the processor expands its placeholders."""
        info = tower_info(self.vision_tower(model))
        side = info.grid
        select_full = model.config.vision_feature_select_strategy == "full"
        base = side * side + int(info.has_cls and select_full)
        lengths = []
        for i, views in enumerate(self.views(model, images)):
            if views == 1:
                lengths.append(base + 1)  # the base view and one newline
                continue
            size = images["image_sizes"][i]
            rows, cols = self.grid_shape(model, size)
            top, bottom, left, right = unpadded_box(rows * side, cols * side, size)
            height, width = self.shrunk(model, bottom - top, right - left, side)
            lengths.append(base + height * (width + 1))
        return lengths

    def shrunk(self, model, height: int, width: int, side: int) -> tuple[int, int]:
        return height, width  # LLaVA-NeXT keeps the whole unpadded grid

    def own_features(self, model, images: dict[str, Any]) -> list[Tensor]:
        out = type(model.model).get_image_features(model.model, **images, return_dict=True)
        return list(out.pooler_output)

    def encode(self, model, compressor: Compressor, images: dict[str, Any], stats) -> Encoded:
        from vzexp.models.llava import compressed_features

        if isinstance(compressor, NoCompression):  # the model's own layout, exactly
            return Encoded(tokens=self.own_features(model, images))
        views = self.views(model, images)
        pixels = images["pixel_values"]
        if pixels.dim() == 5:  # (images, max views, C, H, W), padded: each image's own views
            pixels = torch.cat([p[:n] for p, n in zip(pixels, views)])
        result = compressed_features(model, pixels, compressor, stats)
        projected = model.model.multi_modal_projector(result.tokens)  # (all views, K, d)
        tokens, kept, rows, start = [], [], [], 0
        for i, n in enumerate(views):
            rows.append(start)
            part = slice(start, start + n)
            tokens.append(self.lay_out(model, projected[part], result, part, images, i))
            if result.index is not None:
                kept.append(result.index[part].flatten().tolist())
            start += n
        return Encoded(tokens=tokens, kept=kept or None, last=result, base_rows=rows)

    def grid_shape(self, model, image_size) -> tuple[int, int]:
        from transformers.models.llava_next.modeling_llava_next import get_anyres_image_grid_shape

        return get_anyres_image_grid_shape(
            image_size, model.config.image_grid_pinpoints, model.config.vision_config.image_size
        )

    def lay_out(
        self,
        model,
        views: Tensor,
        result: CompressionResult,
        part: slice,
        images: dict[str, Any],
        image: int,
    ) -> Tensor:
        """(views, K, d) projected tokens of one image -> its (k, d) sequence for the LLM."""
        base, crops = views[0], views[1:]
        if len(crops) == 0:
            return base
        if result.positions is None:
            return torch.cat([base, crops.flatten(0, 1)])
        info = tower_info(self.vision_tower(model))
        side, offset = info.grid, int(info.has_cls)
        rows, cols = self.grid_shape(model, images["image_sizes"][image])
        positions = result.positions[part][1:]  # the crops' (crops, K)
        kept = result.kept_tokens if result.kept_tokens is not None else positions.shape[1]
        box = None
        if self.layout == "newline":
            box = unpadded_box(rows * side, cols * side, images["image_sizes"][image])
        placed, cls, merged = [], [], []
        for c, (crop, where) in enumerate(zip(crops, positions.tolist())):
            r0, c0 = (c // cols) * side, (c % cols) * side
            for k, p in enumerate(where):
                if k >= kept or p < 0:
                    merged.append(crop[k])
                elif p < offset:
                    cls.append(crop[k])
                else:
                    y, x = divmod(p - offset, side)
                    placed.append((r0 + y, c0 + x, crop[k]))
        placed.sort(key=lambda t: (t[0], t[1]))
        sequence = [base]
        if box is None:
            sequence += [t[2][None] for t in placed]
        else:
            top, bottom, left, right = box
            newline = model.model.image_newline.to(base)
            inside = [t for t in placed if top <= t[0] < bottom and left <= t[1] < right]
            for k, (y, _, token) in enumerate(inside):
                sequence.append(token[None])
                if k + 1 == len(inside) or inside[k + 1][0] != y:  # the row's last kept patch
                    sequence.append(newline[None])
        sequence += [t[None] for t in cls] + [t[None] for t in merged]
        return torch.cat(sequence)


class LlavaOnevisionFamily(LlavaNextFamily):
    """LLaVA-OneVision: a SigLIP tower (no CLS: dominant = attention received), anyres with
    `vision_aspect_ratio` (the model's own layout then shrinks large grids by interpolation,
    which compressed views do not need), several images per sample as single views."""

    name = "llava_onevision"
    model_types = ("llava_onevision",)
    processor_name = "LlavaOnevisionProcessor"
    image_inputs = ("pixel_values", "image_sizes", "batch_num_images")

    def model_class(self):
        from transformers import LlavaOnevisionForConditionalGeneration

        return LlavaOnevisionForConditionalGeneration

    def views(self, model, images: dict[str, Any]) -> list[int]:
        views = super().views(model, images)
        counts = images.get("batch_num_images")
        if counts is None:
            return views
        # several images in one sample: each is one view (transformers does not tile them)
        single = [int(n) == 1 for n in counts for _ in range(int(n))]
        return [v if s else 1 for v, s in zip(views, single)]

    def shrunk(self, model, height: int, width: int, side: int) -> tuple[int, int]:
        """anyres_max_N: a grid larger than N views is interpolated down (the model's own rule)."""
        import math

        limit = int(str(model.config.vision_aspect_ratio).removeprefix("anyres_max_"))
        ratio = math.sqrt(height * width / (limit * side**2))
        if ratio > 1.1:
            return int(height // ratio), int(width // ratio)
        return height, width

    def grid_shape(self, model, image_size) -> tuple[int, int]:
        from transformers.models.llava_onevision.modeling_llava_onevision import (
            get_anyres_image_grid_shape,
        )

        return get_anyres_image_grid_shape(
            image_size, model.config.image_grid_pinpoints, model.config.vision_config.image_size
        )
