"""Kept-token overlays of model=small_real's tower (DINOv2-S) on natural images from scikit-image
and on easy-vqa test images,
at the model's 112 px (8 x 8 patches, VisionZip 6 + 2 = 8 tokens) and at 224 px (16 x 16, 28 + 4),
with the share of the layer -2 CLS attention that the dominant tokens hold.

    pip install scikit-image && python experiments/small_real_budgets/overlays.py

Writes overlays/<image>-<px>.png and overlays.json here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vzexp.api import compress_vision
from vzexp.encoders.capture import capture_layer, tower_info
from vzexp.overlays import overlay
from vzexp.pretrained import pretrained_dir
from vzexp.pretrained.dinov2 import at_resolution

HERE = Path(__file__).resolve().parent
IMAGES = ("astronaut", "chelsea", "coffee", "rocket")  # scikit-image's sample images
EASY_VQA = (0, 1, 2, 3)  # test images (64 px, shown as the model sees them: upscaled)
SETTINGS = {112: (6, 2), 224: (28, 4)}  # image size -> (dominant, contextual): 1/8 of the patches
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def tower_at(size: int):
    from transformers import Dinov2Model

    tower = Dinov2Model.from_pretrained(pretrained_dir("dinov2_small"))
    at_resolution(tower.eval(), size)
    return tower


def pixels(image: Image.Image, size: int) -> torch.Tensor:
    array = np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC)) / 255.0
    return torch.from_numpy(((array - MEAN) / STD).transpose(2, 0, 1)).float()[None]


def main() -> None:
    from skimage import data

    out = HERE / "overlays"
    out.mkdir(exist_ok=True)
    report = {}
    from vzexp.data.easy_vqa import EasyVQA

    easy = EasyVQA("test")
    images = {name: Image.fromarray(getattr(data, name)()) for name in IMAGES}
    images |= {f"easyvqa-{i}": Image.open(easy.image_path(i)).convert("RGB") for i in EASY_VQA}
    for size, (dominant, contextual) in SETTINGS.items():
        tower = tower_at(size)
        info = tower_info(tower)
        for name, image in images.items():
            x = pixels(image, size)
            with torch.no_grad():
                result = compress_vision(
                    tower, x, "visionzip", dominant=dominant, contextual=contextual
                )
                captured = capture_layer(tower, x, -2)
            cls_to_patches = captured.cls_attention[0, 1:]  # the CLS query's row, patches only
            kept = [p - 1 for p in result.index[0].tolist() if p >= 1]
            share = float(cls_to_patches[kept].sum() / cls_to_patches.sum())
            shown = Image.fromarray(
                np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC))
            )
            groups = None if result.groups is None else result.groups[0].tolist()
            picture = overlay(shown, info.has_cls, info.seq_len, result.index[0].tolist(), groups)
            picture.save(out / f"{name}-{size}.png")
            report[f"{name}-{size}"] = {
                "patches": info.seq_len - 1,
                "dominant_patches": len(kept),
                "cls_attention_on_dominant": round(share, 4),
                "their_share_of_the_image": round(len(kept) / (info.seq_len - 1), 4),
            }
            print(name, size, report[f"{name}-{size}"], flush=True)
    (HERE / "overlays.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
