"""How much of the selection layer's CLS attention falls on object patches, against the share of
the image those patches cover (the premise of VisionZip's dominant tokens, measured on the shipped
tiny model). Also: how many of VisionZip's dominant picks at the default budget land on objects,
against what random selection would give.

    python experiments/build_tiny/attention_on_objects.py [--model DIR] [--size 800] [--layer -2]

Writes experiments/build_tiny/attention_on_objects.json and prints a short table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from vzexp.compress.budget import split_budget
from vzexp.data.shapes import ShapesQA, object_mask
from vzexp.encoders.capture import capture_layer, tower_info
from vzexp.models.build import load_checkpoint
from vzexp.paths import resource_dir

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(resource_dir() / "tiny_shapes"))
    parser.add_argument("--size", type=int, default=800)
    parser.add_argument("--layer", type=int, default=-2)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--out", default=str(HERE / "attention_on_objects.json"))
    args = parser.parse_args()

    model, processor = load_checkpoint(args.model)
    tower = model.model.vision_tower
    info = tower_info(tower)
    grid = int(info.num_patches**0.5)
    dominant, _ = split_budget(args.tokens, info.num_patches, info.has_cls)
    data = ShapesQA(split="test", size=args.size, seed=0)

    share, mass, cls_self, on_object_picks, random_expect = [], [], [], [], []
    for start in range(0, len(data), 64):
        idx = range(start, min(start + 64, len(data)))
        images = [data[i].image for i in idx]
        pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        cap = capture_layer(tower, pixels, layer=args.layer)
        attention = cap.cls_attention.float()  # (B, 1 + N), summed over heads
        attention = attention / attention.sum(dim=1, keepdim=True)
        masks = torch.stack(
            [torch.as_tensor(object_mask(data.scene(i), grid)).flatten() > 0 for i in idx]
        )
        patches = attention[:, 1:]
        picks = patches.topk(dominant - 1, dim=1).indices  # VisionZip's dominant patches
        share += masks.float().mean(dim=1).tolist()
        mass += ((patches * masks).sum(dim=1) / patches.sum(dim=1)).tolist()
        cls_self += attention[:, 0].tolist()
        on_object_picks += masks.gather(1, picks).float().mean(dim=1).tolist()
        random_expect += masks.float().mean(dim=1).tolist()

    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    result = {
        "model": args.model,
        "layer": args.layer,
        "images": len(share),
        "grid": f"{grid}x{grid}",
        "object_patch_share": mean(share),
        "cls_attention_on_object_patches": mean(mass),
        "cls_attention_on_itself": mean(cls_self),
        "budget_tokens": args.tokens,
        "dominant_patches": dominant - 1,
        "dominant_picks_on_objects": mean(on_object_picks),
        "random_picks_on_objects_expected": mean(random_expect),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"object patches (touched by an object): {result['object_patch_share']:.1%} of the image")
    print(
        f"CLS attention (layer {args.layer}) on them: {result['cls_attention_on_object_patches']:.1%} of the patch attention"
    )
    print(
        f"VisionZip's {dominant - 1} dominant patches on objects: {result['dominant_picks_on_objects']:.1%} (random: {result['random_picks_on_objects_expected']:.1%})"
    )


if __name__ == "__main__":
    main()
