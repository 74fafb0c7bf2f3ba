"""The tiny_shapes recipe's training data, in plain torch: the rendered training scenes, the
vision tower's targets, the LLM stages' conversations and the collation into batches.

Stages, as LLaVA is trained: the vision tower learns the scenes through its CLS token (which
attributes are present, how many objects) and per patch; the LLM learns to answer questions about a
scene given as words in the image's slot (what a pretrained LLM brings to LLaVA); the projector
alone learns to put the visual tokens where those words were; then projector + LLM learn multi-turn
question answering on the images. The vision tower stays frozen after its own stage."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from vzexp.data.conversation import IGNORE_INDEX, ConversationEncoder, pad_right
from vzexp.data.isolated_turns import isolate_turns, pad_isolated

# Asked in no stage; its words stay in the vocabulary so that rebuilds keep the shipped tokenizer's
# word ids.
CAPTION_PROMPT = "Describe the image."


def normalize_pixels(images: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """uint8 (B, 3, H, W) at the tower's resolution -> the image processor's pixel_values
    (rescale + normalise; the processor's resize and crop are identities at that size)."""
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean_t) / std_t


@dataclass
class RenderedScenes:
    """A training stream rendered once: uint8 images plus each scene's caption and QAs."""

    images: torch.Tensor  # (N, 3, H, W) uint8
    scenes: list
    captions: list[str]
    qas: list[list]

    @classmethod
    def build(cls, source) -> RenderedScenes:
        import numpy as np

        images, scenes, captions, qas = [], [], [], []
        for i in range(len(source)):
            item = source[i]
            images.append(
                torch.from_numpy(np.asarray(item["image"].convert("RGB"))).permute(2, 0, 1)
            )
            scenes.append(item["scene"])
            captions.append(item["caption"])
            # an identity can be asked by several question types: one training turn per question
            qas.append(list({qa.question: qa for qa in item["qas"]}.values()))
        return cls(torch.stack(images), scenes, captions, qas)

    def __len__(self) -> int:
        return len(self.scenes)


class TowerTargets(Dataset):
    """Image -> which colour-shape identities are present, the object count - 1, and per patch
    the colour and shape of the object covering it (0 = background)."""

    def __init__(
        self,
        scenes: RenderedScenes,
        identities: list[tuple[str, str]],
        max_objects: int,
        grid: int,
    ):
        from vzexp.data.shapes import COLORS, SHAPES

        self.scenes, self.max_objects = scenes, max_objects
        self.index = {identity: i for i, identity in enumerate(identities)}
        colors = {c: i + 1 for i, c in enumerate(COLORS)}
        shapes = {s: i + 1 for i, s in enumerate(SHAPES)}
        self.patch_color = torch.zeros(len(scenes), grid * grid, dtype=torch.long)
        self.patch_shape = torch.zeros(len(scenes), grid * grid, dtype=torch.long)
        for i, scene in enumerate(scenes.scenes):
            color, shape = patch_labels(scene, grid, colors, shapes)
            self.patch_color[i], self.patch_shape[i] = color, shape

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        objects = self.scenes.scenes[i].objects
        present = torch.zeros(len(self.index))
        for o in objects:
            present[self.index[(o.color, o.shape)]] = 1.0
        return {
            "images": self.scenes.images[i],
            "present": present,
            "count": torch.tensor(min(len(objects), self.max_objects) - 1),
            "patch_color": self.patch_color[i],
            "patch_shape": self.patch_shape[i],
        }


def patch_labels(scene, grid: int, colors: dict, shapes: dict, cover: float = 0.3):
    """(grid*grid,) colour and shape ids of the object covering each patch (later objects are
    drawn on top, so they win), 0 where objects cover less than `cover` of the patch."""
    from dataclasses import replace

    from vzexp.data.shapes import object_mask

    color = torch.zeros(grid * grid, dtype=torch.long)
    shape = torch.zeros(grid * grid, dtype=torch.long)
    for obj in scene.objects:
        covered = torch.from_numpy(object_mask(replace(scene, objects=(obj,)), grid)).flatten()
        covered = covered >= cover
        color[covered], shape[covered] = colors[obj.color], shapes[obj.shape]
    return color, shape


class Conversations(Dataset):
    """Scene i -> a training sequence: `qa` (several of the scene's questions in one conversation,
    a fresh random subset each epoch), `text` (the same questions with the scene's caption in the
    image's slot instead of the visual tokens: the LLM's language stage, where it learns to find
    the asked object among the scene's words) or `objects` (the slot holds one token per object,
    the sum of its words' embeddings, at the position of its centre patch: see object_slot).

    `budgets` (qa mode): keys (i, tokens) give scene i with `tokens` image placeholders, for a
    batch whose image is compressed to that budget (vzexp.recipes.tiny_shapes.budget_batches)."""

    def __init__(
        self,
        scenes: RenderedScenes,
        processor,
        image_tokens: int,
        mode: str,
        turns: int = 6,
        seed: int = 0,
        isolate: bool = False,
        budgets: tuple[int, ...] = (),
    ):
        if mode not in ("qa", "text", "objects"):
            raise ValueError(f"mode={mode!r}: expected qa, text or objects")
        # text, objects: a one-token image slot, replaced by the caption's words or the objects
        self.encode = ConversationEncoder(processor, image_tokens if mode == "qa" else 1)
        self.image_tokens = image_tokens
        self.scenes, self.tokenizer = scenes, processor.tokenizer
        self.image_id = self.tokenizer.convert_tokens_to_ids(processor.image_token)
        self.mode, self.turns, self.seed, self.epoch = mode, turns, seed, 0
        self.isolate = isolate
        self.budget_encoders = {b: ConversationEncoder(processor, b) for b in budgets}

    def __len__(self) -> int:
        return len(self.scenes)

    def _turns(self, i: int) -> list[tuple[str, str]]:
        rng = random.Random(f"{self.seed}:{self.epoch}:{i}")
        # one question per type, picked afresh each epoch: yes/no types would otherwise fill most
        # turns (each has a yes and a no question) and starve the rarer ones
        by_type: dict[str, list] = {}
        for qa in self.scenes.qas[i]:
            by_type.setdefault(qa.type, []).append(qa)
        qas = [rng.choice(group) for group in by_type.values()]
        rng.shuffle(qas)
        return [(qa.question, qa.answer) for qa in qas[: self.turns]]

    def _caption_in_slot(self, i: int, ids: list[int], labels: list[int]):
        words = self.tokenizer(self.scenes.captions[i], add_special_tokens=False).input_ids
        at = ids.index(self.image_id)
        return (
            ids[:at] + words + ids[at + 1 :],
            labels[:at] + [IGNORE_INDEX] * len(words) + labels[at + 1 :],
        )

    def _objects_in_slot(self, i: int, ids: list[int], labels: list[int]) -> dict[str, Any]:
        words, patches = object_slot(
            self.scenes.scenes[i], self.tokenizer.convert_tokens_to_ids, self.image_tokens
        )
        at, k = ids.index(self.image_id), len(words)
        after = len(ids) - at - 1
        # the text after the slot sits where it sits after the visual tokens
        positions = [*range(at), *(at + p for p in patches)]
        positions += range(at + self.image_tokens, at + self.image_tokens + after)
        return {
            "input_ids": torch.tensor(ids[:at] + [self.image_id] * k + ids[at + 1 :]),
            "labels": torch.tensor(labels[:at] + [IGNORE_INDEX] * k + labels[at + 1 :]),
            "position_ids": torch.tensor(positions),
            "object_words": torch.tensor(words),
        }

    def _sequence(
        self, i: int, turns: list[tuple[str, str]], budget: int | None = None
    ) -> tuple[dict[str, Any], int]:
        """The conversation of scene i as one sequence, and where its image slot ends."""
        if budget is not None:
            ids, labels = self.budget_encoders[budget](turns)
            return _item(ids, labels), ids.index(self.image_id) + budget
        ids, labels = self.encode(turns)
        at = ids.index(self.image_id)
        if self.mode == "objects":
            return self._objects_in_slot(i, ids, labels), at + len(self.scenes.scenes[i].objects)
        if self.mode == "text":
            before = len(ids)
            ids, labels = self._caption_in_slot(i, ids, labels)
            return _item(ids, labels), at + 1 + len(ids) - before  # the caption replaced 1 token
        return _item(ids, labels), at + self.image_tokens

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        i, budget = key if isinstance(key, tuple) else (key, None)
        turns = self._turns(i)
        if self.isolate:
            item = isolate_turns([self._sequence(i, [turn], budget) for turn in turns])
        else:
            item = self._sequence(i, turns, budget)[0]
        if self.mode == "qa":
            item["images"] = self.scenes.images[i]
        if budget is not None:
            item["visual_tokens"] = budget
        return item


def _item(ids: list[int], labels: list[int]) -> dict[str, torch.Tensor]:
    return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}


def object_slot(scene, word_id, image_tokens: int) -> tuple[list[list[int]], list[int]]:
    """The scene as the LLM's language stage sees it in `objects` mode: per object (in patch
    order) the word ids [colour, shape, small or -1] whose embeddings sum to its token, and the
    index of its centre patch. One token holding all of an object's attributes, where the object
    is, is what a visual token is; a caption spreads them over words, and the tiny LLM learns that
    two-step lookup (find the word, read its neighbour) only slowly (experiments/build_tiny/)."""
    grid = int(round(image_tokens**0.5))

    def patch(obj) -> int:
        row, col = (min(int(v / scene.image_size * grid), grid - 1) for v in (obj.y, obj.x))
        return row * grid + col

    objects = sorted(scene.objects, key=patch)
    small = word_id("small")
    words = [
        [word_id(o.color), word_id(o.shape), small if scene.is_small(o) else -1] for o in objects
    ]
    return words, [patch(o) for o in objects]


class Collate:
    """Right-padded ids/labels + normalised pixels; images stay uint8 until batched."""

    def __init__(self, pad_id: int, mean: list[float], std: list[float]):
        self.pad_id, self.mean, self.std = pad_id, mean, std

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        if "images" in items[0]:
            images = torch.stack([it["images"] for it in items])
            batch["pixel_values"] = normalize_pixels(images, self.mean, self.std)
        if "input_ids" in items[0]:
            batch.update(pad_right(items, self.pad_id))
        pad = nn.utils.rnn.pad_sequence
        if "segments" in items[0]:  # isolated turns: their positions and turn mask
            batch.update(pad_isolated(items))
        elif "position_ids" in items[0]:
            batch["position_ids"] = pad([it["position_ids"] for it in items], batch_first=True)
        if "object_words" in items[0]:
            batch["object_words"] = pad(
                [it["object_words"] for it in items], batch_first=True, padding_value=-1
            )
        if "visual_tokens" in items[0]:  # a budget batch: one budget for all its rows
            batch["visual_tokens"] = items[0]["visual_tokens"]
        for key in ("present", "count", "patch_color", "patch_shape"):
            if key in items[0]:
                batch[key] = torch.stack([it[key] for it in items])
        return batch
