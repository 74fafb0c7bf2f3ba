"""A deterministic synthetic VQA benchmark: coloured shapes on a textured background.

Every sample is generated from (seed, split, index) with its own RNG, so sample i is built without
building 0..i-1 and the train and test splits are disjoint streams. The scene of a question is
generated conditioned on the question type (the target first, then the rest of the scene), so
every question is answerable by construction. `python -m vzexp.data.shapes export DIR` writes a
split in the LLaVA evaluation format (PNG images + questions.jsonl), `--split train --format
instruct` the train split in LLaVA's instruction format (images + one JSON list).

One module, longer than most: the scene generator, the renderer, the question rules and the
exports share one set of invariants (the priors, the sizes that make an object "small", the
negatives POPE-style questions draw), and reading them in one place top to bottom is how they are
checked; the other shapes modules (dialogue, video, instruct) build on its public names.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import random
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from vzexp.data.sample import Sample
from vzexp.errors import ConfigError

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 38, 38),
    "green": (34, 170, 60),
    "blue": (40, 80, 225),
    "yellow": (240, 210, 30),
    "purple": (150, 60, 200),
    "orange": (250, 130, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
QUESTION_TYPES: tuple[str, ...] = (
    "color",
    "shape",
    "count",
    "exist_random",
    "exist_popular",
    "exist_adversarial",
    "position",
    "small",
)
SPLITS = ("train", "test")
RELATIONS = ("left", "right", "above", "below")

# Fixed descending priors: POPE's "popular" negatives (frequent but absent objects) only mean
# something when some objects are more frequent than others.
COLOR_WEIGHTS = dict(zip(COLORS, (0.28, 0.22, 0.17, 0.13, 0.11, 0.09)))
SHAPE_WEIGHTS = dict(zip(SHAPES, (0.4, 0.3, 0.2, 0.1)))
_PRIOR = {(c, s): COLOR_WEIGHTS[c] * SHAPE_WEIGHTS[s] for c in COLORS for s in SHAPES}

SMALL_PROB = 0.2  # small-object scenes in the other question types: small objects everywhere
LARGE_SIDE = (0.16, 0.30)  # bbox side as a fraction of the image
SMALL_SIDE = (0.07, 0.09)  # ~1-2 patches of the tiny tower (8 px at 112 px)
SMALL_CUTOFF = 0.125  # between the two ranges: what `Scene.is_small` calls small
MARGIN = 2  # px between bboxes in non-overlapping scenes
MAX_OVERLAP = 0.3  # of an object's bbox area, in scenes that allow overlaps
POSITION_RATIO, POSITION_MIN = 1.5, 0.15  # "left of" etc. only when unambiguous
POPULAR_TOP = 3  # popular negatives: one of the 3 most frequent absent objects
SUPERSAMPLE = 4
TEXTURES = ("noise", "stripes", "checker")
TINTS = ((0, 0, 0), (10, 4, -10), (-6, 0, 6))  # grey, beige, cool grey: never an object colour
PLACE_TRIES, SCENE_TRIES = 60, 2000

Q_COLOR = "What color is the {o.shape}?"
Q_SHAPE = "What shape is the {o.color} object?"
Q_COUNT = "How many objects are there?"
Q_EXIST = "Is there {article} {color} {shape} in the image?"
Q_POSITION = "Where is the {a.color} {a.shape} relative to the {b.color} {b.shape}?"
Q_SMALL = "What color is the small {o.shape}?"

Identity = tuple[str, str]


@dataclass(frozen=True)
class ShapeObject:
    color: str
    shape: str
    size: int  # side of the bounding box, px
    x: float  # centre, px (image coordinates: y grows downwards)
    y: float

    @property
    def identity(self) -> Identity:
        return (self.color, self.shape)

    @property
    def corner(self) -> tuple[int, int]:
        """Top-left pixel of the bbox (rendering snaps to the pixel grid)."""
        return round(self.x - self.size / 2), round(self.y - self.size / 2)


@dataclass(frozen=True)
class Background:
    base: tuple[int, int, int]
    texture: str  # one of TEXTURES
    amplitude: float  # peak deviation from base, 0..255 levels, equal on all channels (stays grey)
    period: float  # px
    angle: float  # radians, stripes only
    seed: int  # value-noise grid and checker phase


@dataclass(frozen=True)
class Scene:
    objects: tuple[ShapeObject, ...]
    background: Background
    image_size: int = 112
    allow_overlap: bool = False

    def is_small(self, obj: ShapeObject) -> bool:
        return obj.size < SMALL_CUTOFF * self.image_size


@dataclass(frozen=True)
class QA:
    type: str
    question: str
    answer: str


def object_prior() -> dict[Identity, float]:
    return dict(_PRIOR)


# --- rendering -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _coverage(shape: str, side: int) -> np.ndarray:
    """Fraction of each pixel of a side x side bbox covered by the shape (4x4 supersampled)."""
    n = side * SUPERSAMPLE
    image = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(image)
    e = n - 1
    c = e / 2
    if shape == "circle":
        draw.ellipse([0, 0, e, e], fill=255)
    elif shape == "square":
        draw.rectangle([0, 0, e, e], fill=255)
    elif shape == "triangle":
        draw.polygon([(c, 0), (e, e), (0, e)], fill=255)
    elif shape == "diamond":
        draw.polygon([(c, 0), (e, c), (c, e), (0, c)], fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    # A box filter over the 4x4 sub-pixels is the exact coverage: antialiasing without ringing.
    alpha = np.asarray(image.reduce(SUPERSAMPLE), dtype=np.float32) / 255.0
    alpha.flags.writeable = False
    return alpha


def _clip(obj: ShapeObject, image_size: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """(image slices, coverage slices) of an object's bbox, clipped to the image."""
    left, top = obj.corner
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + obj.size, image_size), min(top + obj.size, image_size)
    x1, y1 = max(x1, x0), max(y1, y0)
    return (
        (slice(y0, y1), slice(x0, x1)),
        (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left)),
    )


@functools.lru_cache(maxsize=8)
def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return yy, xx


def _background(bg: Background, size: int) -> np.ndarray:
    if bg.texture == "noise":
        rng = random.Random(bg.seed)
        cells = max(2, math.ceil(size / bg.period)) + 1
        grid = np.array([rng.random() for _ in range(cells * cells)], dtype=np.float32)
        grid = Image.fromarray(grid.reshape(cells, cells) * 2 - 1)
        field = np.asarray(grid.resize((size, size), Image.Resampling.BILINEAR))
    elif bg.texture == "stripes":
        yy, xx = _coords(size)
        phase = xx * math.cos(bg.angle) + yy * math.sin(bg.angle)
        field = np.sin(phase * (2 * math.pi / bg.period))
    elif bg.texture == "checker":
        yy, xx = _coords(size)
        offset = bg.seed % max(1, round(bg.period))
        cells = np.floor((xx + offset) / bg.period) + np.floor((yy + offset) / bg.period)
        field = (cells % 2) * 2 - 1
    else:
        raise ValueError(f"unknown texture {bg.texture!r}; known: {', '.join(TEXTURES)}")
    base = np.asarray(bg.base, dtype=np.float32)
    return base + np.float32(bg.amplitude) * field[..., None].astype(np.float32)


def render(scene: Scene) -> Image.Image:
    size = scene.image_size
    canvas = _background(scene.background, size)
    for obj in scene.objects:  # in order: later objects are drawn on top
        (rows, cols), (crows, ccols) = _clip(obj, size)
        alpha = _coverage(obj.shape, obj.size)[crows, ccols, None]
        region = canvas[rows, cols]
        region += (np.asarray(COLORS[obj.color], dtype=np.float32) - region) * alpha
    return Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))


def object_mask(scene: Scene, grid: int) -> np.ndarray:
    """(grid, grid) fraction of each patch covered by any object (binary mask at full res)."""
    size = scene.image_size
    if not 1 <= grid <= size:
        raise ValueError(f"grid={grid} must be in 1..{size}")
    full = np.zeros((size, size), dtype=bool)
    for obj in scene.objects:
        (rows, cols), (crows, ccols) = _clip(obj, size)
        full[rows, cols] |= _coverage(obj.shape, obj.size)[crows, ccols] >= 0.5
    edges = np.linspace(0, size, grid + 1).round().astype(int)
    sums = np.add.reduceat(np.add.reduceat(full.astype(np.float32), edges[:-1], 0), edges[:-1], 1)
    counts = np.diff(edges).astype(np.float32)
    return sums / np.outer(counts, counts)


# --- scenes ----------------------------------------------------------------------------------


def _side_range(image_size: int, small: bool) -> tuple[int, int]:
    lo, hi = SMALL_SIDE if small else LARGE_SIDE
    low = max(2, math.ceil(lo * image_size))
    return low, max(low, math.floor(hi * image_size))


def _draw_identities(
    rng: random.Random,
    k: int,
    taken: Sequence[Identity] = (),
    allowed: Callable[[Identity], bool] = lambda _: True,
) -> list[Identity]:
    """k distinct identities by prior, none of `taken`, all `allowed`."""
    chosen = list(taken)
    for _ in range(k):
        candidates = [i for i in _PRIOR if i not in chosen and allowed(i)]
        chosen.append(rng.choices(candidates, weights=[_PRIOR[i] for i in candidates])[0])
    return chosen[len(taken) :]


def _fits(box: tuple[int, int, int], boxes: list, overlaps: list[float], allow: bool) -> bool:
    x, y, s = box
    if not allow:
        return all(
            x >= bx + bs + MARGIN
            or bx >= x + s + MARGIN
            or y >= by + bs + MARGIN
            or by >= y + s + MARGIN
            for bx, by, bs in boxes
        )
    # Each object keeps >= 70% of its bbox free of the others (implies the per-pair bound).
    own = 0
    for other, shared in zip(boxes, overlaps):
        inter = _inter(box, other)
        if shared + inter > MAX_OVERLAP * other[2] ** 2:
            return False
        own += inter
    return own <= MAX_OVERLAP * s * s


def _place(
    rng: random.Random,
    identities: Sequence[Identity],
    small_index: int | None,
    image_size: int,
    overlap_prob: float,
) -> Scene | None:
    """Sizes and positions by rejection sampling; None when the objects do not fit."""
    allow = rng.random() < overlap_prob
    sides = [
        rng.randint(*_side_range(image_size, i == small_index)) for i in range(len(identities))
    ]
    boxes: list[tuple[int, int, int]] = []
    overlaps: list[float] = []
    for side in sides:
        for _ in range(PLACE_TRIES):
            box = (rng.randint(0, image_size - side), rng.randint(0, image_size - side), side)
            if _fits(box, boxes, overlaps, allow):
                break
        else:
            return None
        shared = [_inter(box, b) for b in boxes]
        overlaps = [o + i for o, i in zip(overlaps, shared)] + [sum(shared)]
        boxes.append(box)
    objects = tuple(
        ShapeObject(color, shape, s, x + s / 2, y + s / 2)
        for (color, shape), (x, y, s) in zip(identities, boxes)
    )
    return Scene(objects, _random_background(rng), image_size, allow)


def _inter(a: tuple[int, int, int], b: tuple[int, int, int]) -> int:
    (ax, ay, a_s), (bx, by, b_s) = a, b
    return max(0, min(ax + a_s, bx + b_s) - max(ax, bx)) * max(
        0, min(ay + a_s, by + b_s) - max(ay, by)
    )


def _random_background(rng: random.Random) -> Background:
    level = rng.randint(90, 170)
    tint = rng.choice(TINTS)
    return Background(
        base=tuple(level + t for t in tint),
        texture=rng.choice(TEXTURES),
        amplitude=round(rng.uniform(5.0, 14.0), 2),
        period=round(rng.uniform(6.0, 20.0), 2),
        angle=round(rng.uniform(0.0, math.pi), 3),
        seed=rng.getrandbits(32),
    )


def make_scene(
    rng: random.Random,
    image_size: int = 112,
    max_objects: int = 4,
    small: bool = False,
    overlap_prob: float = 0.15,
) -> Scene:
    """1..max_objects objects by prior; `small`: exactly one small object plus 1.. large ones."""
    if small and max_objects < 2:
        raise ConfigError("max_objects", max_objects, "at least 2 for a small-object scene")
    for _ in range(SCENE_TRIES):
        n = rng.randint(2 if small else 1, max_objects)
        scene = _place(
            rng,
            _draw_identities(rng, n),
            rng.randrange(n) if small else None,
            image_size,
            overlap_prob,
        )
        if scene is not None:
            return scene
    raise RuntimeError(f"could not place {max_objects} objects in a {image_size}px image")


# --- questions -------------------------------------------------------------------------------


def _relation(a: ShapeObject, b: ShapeObject, image_size: int) -> str | None:
    """Where a is relative to b, or None when the dominant axis is not clear enough."""
    dx, dy = a.x - b.x, a.y - b.y
    if abs(dx) >= POSITION_RATIO * abs(dy) and abs(dx) >= POSITION_MIN * image_size:
        return "left" if dx < 0 else "right"
    if abs(dy) >= POSITION_RATIO * abs(dx) and abs(dy) >= POSITION_MIN * image_size:
        return "above" if dy < 0 else "below"  # image coordinates: above = smaller y
    return None


def _position_qa(a: ShapeObject, b: ShapeObject, relation: str) -> QA:
    return QA("position", Q_POSITION.format(a=a, b=b), relation)


def _exist_qa(qtype: str, identity: Identity, yes: bool) -> QA:
    color, shape = identity
    article = "an" if color.startswith(tuple("aeiou")) else "a"  # "an orange square"
    question = Q_EXIST.format(article=article, color=color, shape=shape)
    return QA(qtype, question, "yes" if yes else "no")


def _negative(rng: random.Random, scene: Scene, qtype: str) -> Identity:
    """An absent identity, chosen as POPE chooses its negatives."""
    present = {o.identity for o in scene.objects}
    absent = [i for i in _PRIOR if i not in present]
    if qtype == "exist_popular":
        ranked = sorted(absent, key=lambda i: -_PRIOR[i])  # stable: ties in COLORS/SHAPES order
        return rng.choice(ranked[:POPULAR_TOP])
    if qtype == "exist_adversarial":
        absent = [i for i in absent if any(i[0] == p[0] or i[1] == p[1] for p in present)]
    return rng.choice(absent)


def _color_qa(obj: ShapeObject) -> QA:
    return QA("color", Q_COLOR.format(o=obj), obj.color)


def _shape_qa(obj: ShapeObject) -> QA:
    return QA("shape", Q_SHAPE.format(o=obj), obj.shape)


def _small_qa(obj: ShapeObject) -> QA:
    return QA("small", Q_SMALL.format(o=obj), obj.color)


def _count_qa(scene: Scene) -> QA:
    return QA("count", Q_COUNT, str(len(scene.objects)))


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _check_type(qtype: str, key: str = "data.dataset.types") -> None:
    if qtype not in QUESTION_TYPES:
        raise ConfigError(key, qtype, f"question types among {', '.join(QUESTION_TYPES)}")


def ask(
    rng: random.Random,
    qtype: str,
    image_size: int = 112,
    max_objects: int = 4,
    overlap_prob: float = 0.15,
    *,
    yes: bool | None = None,
) -> tuple[Scene, QA]:
    """A scene generated for a question of `qtype`, and the question. `yes` fixes the answer of
    the exist_* types (None: a fair coin from rng)."""
    _check_type(qtype)
    pair_type = qtype in ("position", "small")
    if pair_type and max_objects < 2:
        raise ConfigError("data.dataset.max_objects", max_objects, f"at least 2 for {qtype!r}")
    if qtype.startswith("exist") and yes is None:
        yes = rng.random() < 0.5
    for _ in range(SCENE_TRIES):
        n = rng.randint(2 if pair_type else 1, max_objects)
        small = qtype == "small" or (n >= 2 and rng.random() < SMALL_PROB)
        # The target first, the asked attribute uniform (no answer prior to exploit), the rest of
        # the scene by prior and constrained so that the question stays valid.
        if qtype == "color":
            target = (rng.choice(list(COLORS)), _weighted(rng, SHAPE_WEIGHTS))
            others = _draw_identities(rng, n - 1, [target], lambda i, t=target: i[1] != t[1])
        elif qtype == "shape":
            target = (_weighted(rng, COLOR_WEIGHTS), rng.choice(SHAPES))
            others = _draw_identities(rng, n - 1, [target], lambda i, t=target: i[0] != t[0])
        elif qtype == "small":
            target = (rng.choice(list(COLORS)), _weighted(rng, SHAPE_WEIGHTS))
            others = _draw_identities(rng, n - 1, [target])
        else:
            target, others = None, _draw_identities(rng, n)
        identities = ([target] if target else []) + others
        order = list(range(n))
        rng.shuffle(order)  # drawing order, so the target is not always at the bottom
        if qtype == "small":
            small_index = order.index(0)
        else:
            small_index = rng.randrange(n) if small else None
        scene = _place(rng, [identities[k] for k in order], small_index, image_size, overlap_prob)
        if scene is None:
            continue
        target_obj = scene.objects[order.index(0)]
        if qtype == "color":
            return scene, _color_qa(target_obj)
        if qtype == "shape":
            return scene, _shape_qa(target_obj)
        if qtype == "small":
            return scene, _small_qa(target_obj)
        if qtype == "count":
            return scene, _count_qa(scene)
        if qtype.startswith("exist"):
            asked = rng.choice(scene.objects).identity if yes else _negative(rng, scene, qtype)
            return scene, _exist_qa(qtype, asked, bool(yes))
        pairs = [
            (a, b, rel)
            for a in scene.objects
            for b in scene.objects
            if a is not b and (rel := _relation(a, b, image_size))
        ]
        if pairs:  # else: resample the scene
            return scene, _position_qa(*rng.choice(pairs))
    raise RuntimeError(f"could not generate a {qtype!r} scene in {SCENE_TRIES} tries")


def questions_for(
    scene: Scene, rng: random.Random, types: Sequence[str] = QUESTION_TYPES
) -> list[QA]:
    """Every valid question of `types` about a scene, in `types` order (exist types: one yes and
    one no each; position: each unambiguous pair once, in a random direction)."""
    objects = scene.objects
    shapes = [o.shape for o in objects]
    colors = [o.color for o in objects]
    qas: list[QA] = []
    for qtype in types:
        _check_type(qtype, "types")
        if qtype == "color":
            qas += [_color_qa(o) for o in objects if shapes.count(o.shape) == 1]
        elif qtype == "shape":
            qas += [_shape_qa(o) for o in objects if colors.count(o.color) == 1]
        elif qtype == "count":
            qas.append(_count_qa(scene))
        elif qtype.startswith("exist"):
            qas.append(_exist_qa(qtype, rng.choice(objects).identity, True))
            qas.append(_exist_qa(qtype, _negative(rng, scene, qtype), False))
        elif qtype == "position":
            for i, a in enumerate(objects):
                for b in objects[i + 1 :]:
                    first, second = (b, a) if rng.random() < 0.5 else (a, b)
                    if rel := _relation(first, second, scene.image_size):
                        qas.append(_position_qa(first, second, rel))
        elif qtype == "small":
            small = [o for o in objects if scene.is_small(o)]
            if len(small) == 1 and len(objects) >= 2:
                qas.append(_small_qa(small[0]))
    return qas


def caption(scene: Scene) -> str:
    """The objects left to right, e.g. "small red circle , blue square ." (words split by spaces)."""
    order = sorted(
        scene.objects,
        key=lambda o: (o.x, o.y, list(COLORS).index(o.color), SHAPES.index(o.shape)),
    )
    parts = [("small " if scene.is_small(o) else "") + f"{o.color} {o.shape}" for o in order]
    return " , ".join(parts) + " ."


_WORD = re.compile(r"\w+|[^\w\s]+")  # what tokenizers' Whitespace pre-tokenizer splits on


def vocabulary(max_objects: int = 4) -> list[str]:
    templates = (Q_COLOR, Q_SHAPE, Q_COUNT, Q_EXIST, Q_POSITION, Q_SMALL)
    texts = [
        *(re.sub(r"\{[^}]*\}", " ", t) for t in templates),
        "a an",  # Q_EXIST's articles
        "small , .",  # captions
        *COLORS,
        *SHAPES,
        *RELATIONS,
        "yes no",
        *(str(n) for n in range(1, max_objects + 1)),
    ]
    return sorted({w for text in texts for w in _WORD.findall(text.lower())})


# --- datasets --------------------------------------------------------------------------------


def _sample_rng(seed: int, split: str, index: int) -> random.Random:
    # String seeding hashes with SHA-512: the same stream in every process (unlike hash()).
    return random.Random(f"{seed}:{split}:{index}")


def _validate(split: str, size: int, image_size: int, max_objects: int, overlap_prob: float):
    key = "data.dataset"
    if split not in SPLITS:
        raise ConfigError(f"{key}.split", split, " or ".join(SPLITS))
    if not isinstance(size, int) or size <= 0:
        raise ConfigError(f"{key}.size", size, "an integer >= 1")
    if not isinstance(image_size, int) or image_size < 28:
        raise ConfigError(f"{key}.image_size", image_size, "an integer >= 28 (px)")
    if not isinstance(max_objects, int) or not 2 <= max_objects <= 9:
        raise ConfigError(f"{key}.max_objects", max_objects, "an integer in 2..9")
    if not 0.0 <= overlap_prob <= 1.0:
        raise ConfigError(f"{key}.overlap_prob", overlap_prob, "a probability in [0, 1]")


class ShapesQA(Dataset):
    """The evaluation set: sample i asks a question of type types[i % len(types)] (balanced)."""

    def __init__(
        self,
        split: str = "test",
        size: int = 800,
        image_size: int = 112,
        seed: int = 0,
        max_objects: int = 4,
        types: Sequence[str] | None = None,
        overlap_prob: float = 0.15,
    ):
        _validate(split, size, image_size, max_objects, overlap_prob)
        types = list(QUESTION_TYPES if types is None else types)  # also a Hydra ListConfig
        if not types:
            raise ConfigError("data.dataset.types", types, "a non-empty list of question types")
        for qtype in types:
            _check_type(qtype)
        self.split, self.size, self.image_size, self.seed = split, size, image_size, seed
        self.max_objects, self.types, self.overlap_prob = max_objects, types, overlap_prob

    def __len__(self) -> int:
        return self.size

    def _build(self, i: int) -> tuple[int, Scene, QA]:
        if not -self.size <= i < self.size:
            raise IndexError(f"sample {i} out of range for {self.size} samples")
        i %= self.size
        n = len(self.types)
        qtype = self.types[i % n]
        # Exist answers alternate per type: exactly half yes, half no.
        scene, qa = ask(
            _sample_rng(self.seed, self.split, i),
            qtype,
            self.image_size,
            self.max_objects,
            self.overlap_prob,
            yes=(i // n) % 2 == 0,
        )
        return i, scene, qa

    def scene(self, i: int) -> Scene:
        return self._build(i)[1]

    def sample_id(self, i: int) -> str:
        """The id of sample i without rendering it (resume reads ids only)."""
        if not -self.size <= i < self.size:
            raise IndexError(f"sample {i} out of range for {self.size} samples")
        return f"shapes-{self.split}-{i % self.size:05d}"

    def __getitem__(self, i: int) -> Sample:
        i, scene, qa = self._build(i)
        return Sample(
            id=self.sample_id(i),
            image=render(scene),
            question=qa.question,
            answer=qa.answer,
            meta={
                "type": qa.type,
                "split": self.split,
                "objects": [asdict(o) for o in scene.objects],
            },
        )

    def vocabulary(self) -> list[str]:
        return vocabulary(self.max_objects)


class ShapesScenes(Dataset):
    """The training stream: scene i with its caption and every valid question about it."""

    def __init__(
        self,
        split: str = "train",
        size: int = 8000,
        image_size: int = 112,
        seed: int = 0,
        max_objects: int = 4,
        overlap_prob: float = 0.15,
        small_prob: float = SMALL_PROB,
    ):
        _validate(split, size, image_size, max_objects, overlap_prob)
        if not 0.0 <= small_prob <= 1.0:
            raise ConfigError("data.dataset.small_prob", small_prob, "a probability in [0, 1]")
        self.split, self.size, self.image_size, self.seed = split, size, image_size, seed
        self.max_objects, self.overlap_prob, self.small_prob = max_objects, overlap_prob, small_prob

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict:
        if not -self.size <= i < self.size:
            raise IndexError(f"scene {i} out of range for {self.size} scenes")
        rng = _sample_rng(self.seed, self.split, i % self.size)
        small = rng.random() < self.small_prob
        scene = make_scene(rng, self.image_size, self.max_objects, small, self.overlap_prob)
        return {
            "image": render(scene),
            "scene": scene,
            "caption": caption(scene),
            "qas": questions_for(scene, rng),
        }

    def vocabulary(self) -> list[str]:
        return vocabulary(self.max_objects)


# --- LLaVA instruction format (task=tune's training data) -------------------------------------
# Scene i becomes one multi-turn conversation: one question of each type the scene allows (picked
# and ordered by a seeded generator), at most `turns` of them, the image in the first turn.

INSTRUCT_FILE = "train.json"


def instruct_conversation(qas: list, rng: random.Random, turns: int) -> list[dict]:
    by_type: dict[str, list] = {}
    for qa in qas:
        by_type.setdefault(qa.type, []).append(qa)
    picked = [rng.choice(group) for _, group in sorted(by_type.items())]
    rng.shuffle(picked)
    messages = []
    for k, qa in enumerate(picked[:turns]):
        question = f"<image>\n{qa.question}" if k == 0 else qa.question
        messages += [{"from": "human", "value": question}, {"from": "gpt", "value": qa.answer}]
    return messages


def export_instruct(
    out: Path,
    scenes: int,
    seed: int = 0,
    image_size: int = 112,
    max_objects: int = 4,
    turns: int = 6,
) -> int:
    """Write out/images/<id>.png and out/train.json; returns the number of records."""
    source = ShapesScenes("train", scenes, image_size, seed, max_objects)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(len(source)):
        item = source[i]
        name = f"shapes-train-{i:05d}.png"
        item["image"].save(images / name, format="PNG")
        rng = random.Random(f"instruct:{seed}:{i}")
        records.append(
            {
                "id": name[:-4],
                "image": name,
                "conversations": instruct_conversation(item["qas"], rng, turns),
            }
        )
    # written last and atomically: a present train.json means a complete export
    tmp = out / f".{INSTRUCT_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(records, indent=0))
    os.replace(tmp, out / INSTRUCT_FILE)
    return len(records)


# --- export CLI ------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def export(
    out: Path, split: str, size: int, seed: int, image_size: int, max_objects: int = 4
) -> int:
    """Write out/images/<id>.png and out/questions.jsonl (LLaVA evaluation format)."""
    dataset = ShapesQA(split, size, image_size, seed, max_objects)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    with open(out / "questions.jsonl", "w", encoding="utf-8") as lines:
        for i in range(len(dataset)):
            sample = dataset[i]
            name = f"{sample.id}.png"
            sample.image.save(images / name, format="PNG")
            record = {
                "question_id": sample.id,
                "image": name,
                "text": sample.question,
                "category": sample.meta["type"],
                "answer": sample.answer,
            }
            lines.write(json.dumps(record) + "\n")
    return len(dataset)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m vzexp.data.shapes", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("export", help="write a split as PNGs + questions.jsonl")
    cmd.add_argument("dir", type=Path, help="output directory (created if missing)")
    cmd.add_argument("--split", default="test", choices=SPLITS)
    cmd.add_argument("--size", type=int, default=800, help="number of questions (default 800)")
    cmd.add_argument("--seed", type=int, default=0)
    cmd.add_argument("--image-size", type=int, default=112)
    cmd.add_argument("--max-objects", type=int, default=4)
    cmd.add_argument(
        "--format",
        default="eval",
        choices=("eval", "instruct"),
        help="eval: questions.jsonl (one question per image); instruct: train.json in LLaVA's "
        "instruction format (one multi-turn conversation per scene; --size counts scenes)",
    )
    args = parser.parse_args(argv)
    try:
        if args.format == "instruct":
            n = export_instruct(args.dir, args.size, args.seed, args.image_size, args.max_objects)
            print(f"wrote {n} conversations to {args.dir / INSTRUCT_FILE} (seed={args.seed})")
            return 0
        n = export(args.dir, args.split, args.size, args.seed, args.image_size, args.max_objects)
    except (ConfigError, OSError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {n} questions to {args.dir / 'questions.jsonl'} and {n} images to "
        f"{args.dir / 'images'} (split={args.split}, seed={args.seed}, "
        f"image_size={args.image_size})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
