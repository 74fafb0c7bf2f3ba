"""Shapes videos (`data=shapes_video`): a few frames of a scene in motion, given to the model as a
sequence of images (each frame compressed with the per-frame budget).

Two question types, both needing more than one frame:
  direction: one object moves in a straight line (the others stay): "Where does the red circle
    move?" -> left | right | up | down;
  order: the objects appear one per frame: "Which color appears last?" -> the colour of the
    object that the last frame adds.
Deterministic per (seed, split, index), balanced over the two types and the four directions;
scored by exact match."""

from __future__ import annotations

import math
import random
import re
from dataclasses import replace

from torch.utils.data import Dataset

from vzexp.data.sample import Sample
from vzexp.data.shapes import (
    LARGE_SIDE,
    SPLITS,
    Scene,
    ShapeObject,
    _draw_identities,
    _random_background,
    render,
    vocabulary,
)
from vzexp.errors import ConfigError

VIDEO_TYPES = ("direction", "order")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
Q_DIRECTION = "Where does the {o.color} {o.shape} move?"
Q_ORDER = "Which color appears last?"
TRIES = 500


def video_vocabulary(max_objects: int = 4) -> list[str]:
    texts = [re.sub(r"\{[^}]*\}", " ", t).lower() for t in (Q_DIRECTION, Q_ORDER)]
    words = {w for t in texts for w in re.findall(r"\w+|[^\w\s]+", t)}
    return sorted(set(vocabulary(max_objects)) | words | set(DIRECTIONS))


def _side(rng: random.Random, size: int) -> int:
    lo, hi = LARGE_SIDE
    return rng.randint(math.ceil(lo * size), math.floor(hi * size))


def _apart(a: tuple[float, float, int], b: tuple[float, float, int]) -> bool:
    (ax, ay, a_s), (bx, by, b_s) = a, b
    return abs(ax - bx) >= (a_s + b_s) / 2 + 2 or abs(ay - by) >= (a_s + b_s) / 2 + 2


class ShapesVideo(Dataset):
    def __init__(
        self,
        split: str = "test",
        size: int = 200,
        frames: int = 4,
        image_size: int = 112,
        seed: int = 0,
        max_objects: int = 3,
    ):
        if split not in SPLITS:
            raise ConfigError("data.dataset.split", split, " or ".join(SPLITS))
        if not isinstance(frames, int) or not 2 <= frames <= 8:
            raise ConfigError("data.dataset.frames", frames, "an integer in 2..8")
        if not isinstance(max_objects, int) or not 2 <= max_objects <= frames:
            raise ConfigError(
                "data.dataset.max_objects", max_objects, f"an integer in 2..frames ({frames})"
            )
        self.split, self.size, self.frames = split, size, frames
        self.image_size, self.seed, self.max_objects = image_size, seed, max_objects

    def __len__(self) -> int:
        return self.size

    def sample_id(self, i: int) -> str:
        return f"shapes-video-{self.split}-{i % self.size:05d}"

    def _moving(self, rng: random.Random, direction: str) -> list[Scene]:
        size, n = self.image_size, rng.randint(1, self.max_objects)
        identities = _draw_identities(rng, n)
        dx, dy = DIRECTIONS[direction]
        background = _random_background(rng)
        for _ in range(TRIES):
            side = _side(rng, size)
            step = rng.randint(max(4, size // 16), max(5, size // 10))
            travel = step * (self.frames - 1)
            # the mover's start: its whole path stays inside the image
            lo_x, hi_x = side / 2 + max(0, -dx * travel), size - side / 2 - max(0, dx * travel)
            lo_y, hi_y = side / 2 + max(0, -dy * travel), size - side / 2 - max(0, dy * travel)
            if lo_x > hi_x or lo_y > hi_y:
                continue
            x0, y0 = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
            path = [(x0 + dx * step * f, y0 + dy * step * f, side) for f in range(self.frames)]
            still = []
            for _ in range(n - 1):
                for _ in range(TRIES):
                    s = _side(rng, size)
                    box = (rng.uniform(s / 2, size - s / 2), rng.uniform(s / 2, size - s / 2), s)
                    if all(_apart(box, b) for b in path + still):
                        still.append(box)
                        break
            if len(still) != n - 1:
                continue
            others = [ShapeObject(*i, s, x, y) for i, (x, y, s) in zip(identities[1:], still)]
            mover = ShapeObject(*identities[0], side, x0, y0)
            return [
                Scene(tuple(others) + (replace(mover, x=x, y=y),), background, size)
                for x, y, _ in path
            ]
        raise RuntimeError("could not place a moving object")

    def _appearing(self, rng: random.Random) -> list[Scene]:
        size, n = self.image_size, rng.randint(2, self.max_objects)
        # distinct colours, so that "which color" has one answer
        identities = _draw_identities(rng, n)
        while len({c for c, _ in identities}) < n:
            identities = _draw_identities(rng, n)
        background = _random_background(rng)
        for _ in range(TRIES):
            boxes = []
            for _ in range(n):
                s = _side(rng, size)
                box = (rng.uniform(s / 2, size - s / 2), rng.uniform(s / 2, size - s / 2), s)
                if all(_apart(box, b) for b in boxes):
                    boxes.append(box)
            if len(boxes) == n:
                break
        else:
            raise RuntimeError("could not place the appearing objects")
        objects = [ShapeObject(*i, s, x, y) for i, (x, y, s) in zip(identities, boxes)]
        # object k appears at frame k (the first frames may hold them all before the last one)
        shown = [min(f + 1, n - 1) if f < self.frames - 1 else n for f in range(self.frames)]
        return [Scene(tuple(objects[:k]), background, size) for k in shown]

    def __getitem__(self, i: int) -> Sample:
        if not -self.size <= i < self.size:
            raise IndexError(f"sample {i} out of range for {self.size} samples")
        i %= self.size
        rng = random.Random(f"video:{self.seed}:{self.split}:{i}")
        qtype = VIDEO_TYPES[i % len(VIDEO_TYPES)]
        if qtype == "direction":
            direction = list(DIRECTIONS)[(i // len(VIDEO_TYPES)) % len(DIRECTIONS)]
            scenes = self._moving(rng, direction)
            mover = scenes[0].objects[-1]
            question, answer = Q_DIRECTION.format(o=mover), direction
        else:
            scenes = self._appearing(rng)
            question, answer = Q_ORDER, scenes[-1].objects[-1].color
        return Sample(
            id=self.sample_id(i),
            image=[render(scene) for scene in scenes],
            question=question,
            answer=answer,
            meta={"type": qtype, "split": self.split, "frames": self.frames},
        )

    def vocabulary(self) -> list[str]:
        return video_vocabulary(self.max_objects)
