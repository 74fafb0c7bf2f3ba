"""Kept-token overlays: the image with the patches a strategy kept shown bright and outlined, and
(VisionZip) every merged patch tinted with the colour of the contextual token it went into;
patches that reach the LLM in no form are dimmed. The picture users put in papers."""

from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image, ImageDraw

SCALE = 4  # tiny-model images are 112 px: draw them larger


def palette(n: int) -> list[tuple[int, int, int]]:
    return [
        tuple(int(255 * c) for c in colorsys.hsv_to_rgb(k / max(n, 1), 0.85, 1.0)) for k in range(n)
    ]


def overlay(
    image: Image.Image,
    has_cls: bool,
    num_tokens: int,
    index: list[int] | None,
    groups: list[int] | None = None,
) -> Image.Image:
    """image: the model-resolution RGB image; num_tokens: the tower's sequence length;
    index: kept sequence positions (CLS = 0 when present); groups: per position, -1 kept,
    j >= 0 merged into contextual token j, -2 dropped."""
    grid = math.isqrt(num_tokens - int(has_cls))
    base = image.convert("RGB").resize((image.width * SCALE, image.height * SCALE), Image.NEAREST)
    pixels = np.asarray(base).astype(np.float32)
    cell_h, cell_w = base.height / grid, base.width / grid
    offset = int(has_cls)
    kept = {p - offset for p in (index or []) if p >= offset}
    merged = {}
    if groups is not None:
        colours = palette(max(groups) + 1 if max(groups) >= 0 else 0)
        merged = {p - offset: colours[g] for p, g in enumerate(groups) if g >= 0 and p >= offset}
    out = pixels * 0.35  # dim everything, then light up what reaches the LLM
    for patch in range(grid * grid):
        r, c = divmod(patch, grid)
        ys, ye = int(r * cell_h), int((r + 1) * cell_h)
        xs, xe = int(c * cell_w), int((c + 1) * cell_w)
        if patch in kept:
            out[ys:ye, xs:xe] = pixels[ys:ye, xs:xe]
        elif patch in merged:
            tint = np.array(merged[patch], dtype=np.float32)
            out[ys:ye, xs:xe] = 0.5 * pixels[ys:ye, xs:xe] + 0.5 * tint
    result = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(result)
    for patch in kept:
        r, c = divmod(patch, grid)
        box = (
            int(c * cell_w),
            int(r * cell_h),
            int((c + 1) * cell_w) - 1,
            int((r + 1) * cell_h) - 1,
        )
        draw.rectangle(box, outline=(255, 255, 255), width=2)
    return result
