"""A tiny image-question set generated on the fly: one coloured square on a plain background.

It exists so that the whole pipeline runs with no files; the synthetic shapes benchmark replaces it
as the default. Deterministic from `seed`."""

from __future__ import annotations

import random

from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from vzexp.data.sample import Sample

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 70, 220),
    "yellow": (230, 210, 40),
}
BACKGROUND = (128, 128, 128)
QUESTION = "What color is the square?"


class ToyColors(Dataset):
    def __init__(self, size: int = 32, image_size: int = 112, seed: int = 1234):
        rng = random.Random(seed)
        self.samples = []
        for i in range(size):
            color = rng.choice(sorted(COLORS))
            side = rng.randint(image_size // 8, image_size // 3)
            x, y = rng.randint(0, image_size - side), rng.randint(0, image_size - side)
            image = Image.new("RGB", (image_size, image_size), BACKGROUND)
            ImageDraw.Draw(image).rectangle([x, y, x + side - 1, y + side - 1], fill=COLORS[color])
            self.samples.append(
                Sample(id=f"toy-{i:05d}", image=image, question=QUESTION, answer=color)
            )

    @staticmethod
    def vocabulary() -> list[str]:
        return [*QUESTION.replace("?", " ").split(), *COLORS]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]
