"""The shapes train split in LLaVA's instruction format (images + one JSON list), the default
training data of task=tune: `python -m vzexp.data.shapes export DIR --split train --format instruct`.

Scene i becomes one multi-turn conversation: one question of each type the scene allows (picked
and ordered by a seeded generator), at most `turns` of them, the image in the first turn."""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from vzexp.data.instruct import InstructData
from vzexp.data.shapes import ShapesScenes
from vzexp.errors import ConfigError

INSTRUCT_FILE = "train.json"


def conversation(qas: list, rng: random.Random, turns: int) -> list[dict]:
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
            {"id": name[:-4], "image": name, "conversations": conversation(item["qas"], rng, turns)}
        )
    # written last and atomically: a present train.json means a complete export
    tmp = out / f".{INSTRUCT_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(records, indent=0))
    os.replace(tmp, out / INSTRUCT_FILE)
    return len(records)


def shapes_instruct_dir(cache_root: Path, scenes: int, seed: int, image_size: int) -> Path:
    """The exported train split in the cache, written once (reused by every later run)."""
    out = cache_root / f"shapes-instruct-s{seed}-n{scenes}-px{image_size}"
    if not (out / INSTRUCT_FILE).is_file():
        export_instruct(out, scenes, seed, image_size)
    return out


@dataclass
class ShapesTrainData(InstructData):
    """train_data=shapes: the shapes train split, generated into the cache on first use (or a
    LLaVA instruction JSON given by path)."""

    scenes: int = 2000
    image_size: int = 112

    def __post_init__(self):
        super().__post_init__()
        if self.path is None and self.scenes < 1:
            raise ConfigError("train_data.scenes", self.scenes, "an integer >= 1")

    def source(self, cache_root: Path) -> tuple[Path, Path]:
        if self.path is not None:
            return super().source(cache_root)
        root = shapes_instruct_dir(cache_root, self.scenes, self.seed, self.image_size)
        return root / INSTRUCT_FILE, root / "images"
