"""The per-patch shape baseline for the tower probes: the share of object patches of each shape in
the probe's 6,000 train scenes (always answering the most common one scores its share).

    python experiments/tiny_default/probes/shape_majority.py
Measured: circle 0.396, square 0.393, triangle 0.144, diamond 0.067."""

import torch

from vzexp.data.shapes import COLORS, SHAPES, ShapesScenes
from vzexp.recipes.tiny_shapes.data import patch_labels

source = ShapesScenes(split="train", size=6000, seed=0)
colors = {c: i + 1 for i, c in enumerate(COLORS)}
shapes = {s: i + 1 for i, s in enumerate(SHAPES)}
counts = torch.zeros(len(SHAPES) + 1)
for i in range(len(source)):
    _, shape = patch_labels(source[i]["scene"], 14, colors, shapes)
    counts += torch.bincount(shape, minlength=len(SHAPES) + 1).float()
on_objects = counts[1:]
print({s: round(float(c / on_objects.sum()), 3) for s, c in zip(SHAPES, on_objects, strict=True)})
