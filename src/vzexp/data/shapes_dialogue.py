"""Shapes dialogues (`data=shapes_dialogue`): one scene, several questions asked in one
conversation, as the tiny model was trained (one question per type, in a seeded order).

Deterministic per (seed, index) like the single-question set; the scenes are drawn from the test
stream's prior (not conditioned on a question type), so every type is asked only where the scene
makes it valid. Scored per turn by exact match, overall and per type."""

from __future__ import annotations

import random

from torch.utils.data import Dataset

from vzexp.data.sample import Sample
from vzexp.data.shapes import ShapesScenes, vocabulary
from vzexp.errors import ConfigError


class ShapesDialogues(Dataset):
    def __init__(
        self,
        split: str = "test",
        size: int = 200,
        turns: int = 6,
        image_size: int = 112,
        seed: int = 0,
        max_objects: int = 4,
    ):
        if not isinstance(turns, int) or turns < 1:
            raise ConfigError("data.dataset.turns", turns, "an integer >= 1 (questions per image)")
        self.scenes = ShapesScenes(split, size, image_size, seed, max_objects)
        self.split, self.turns, self.seed, self.max_objects = split, turns, seed, max_objects

    def __len__(self) -> int:
        return len(self.scenes)

    def sample_id(self, i: int) -> str:
        return f"shapes-dialogue-{self.split}-{i % len(self):05d}"

    def __getitem__(self, i: int) -> Sample:
        scene = self.scenes[i]
        rng = random.Random(f"dialogue:{self.seed}:{self.split}:{i}")
        by_type: dict[str, list] = {}
        for qa in scene["qas"]:
            by_type.setdefault(qa.type, []).append(qa)
        asked = [rng.choice(group) for group in by_type.values()]
        rng.shuffle(asked)
        turns = [{"question": q.question, "answer": q.answer, "type": q.type} for q in asked]
        turns = turns[: self.turns]
        return Sample(
            id=self.sample_id(i),
            image=scene["image"],
            question=turns[0]["question"],
            answer=turns[0]["answer"],
            meta={"type": turns[0]["type"], "split": self.split},
            turns=turns,
        )

    def vocabulary(self) -> list[str]:
        return vocabulary(self.max_objects)
