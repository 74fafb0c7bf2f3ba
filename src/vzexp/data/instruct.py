"""LLaVA's instruction-tuning format, for projector tuning (task=tune).

The file is a JSON list of records, as LLaVA's llava_v1_5_mix665k.json:
    {"id": "...", "image": "coco/train2017/000000033471.jpg",
     "conversations": [{"from": "human", "value": "<image>\\nWhat color is ...?"},
                       {"from": "gpt", "value": "Red."}, ...]}
Images are read relative to `image_root`. Text-only records (no "image") are skipped: the tuner
adapts the projector, which they do not reach. A slice is taken as the paper does (a seeded
random `fraction`, then the first `limit`)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from vzexp.data.conversation import ConversationEncoder, pad_right
from vzexp.data.isolated_turns import isolate_turns, pad_isolated
from vzexp.errors import ConfigError, MissingPathError

IMAGE_MARK = "<image>"
ROLES = ("human", "gpt")


@dataclass(frozen=True)
class InstructRecord:
    id: str
    image: str  # relative to the image root
    turns: tuple[tuple[str, str], ...]  # (question, answer) pairs


def _turns(record: dict, where: str) -> tuple[tuple[str, str], ...]:
    messages = record.get("conversations")
    if not isinstance(messages, list) or not messages or len(messages) % 2:
        raise MissingPathError(
            f"{where}: 'conversations' must be a non-empty list of human/gpt message pairs"
        )
    turns = []
    for k in range(0, len(messages), 2):
        pair = messages[k : k + 2]
        roles = tuple(m.get("from") if isinstance(m, dict) else None for m in pair)
        if roles != ROLES or not all(isinstance(m.get("value"), str) for m in pair):
            raise MissingPathError(
                f"{where}: messages {k} and {k + 1} must be "
                f'{{"from": "human", "value": str}} then {{"from": "gpt", "value": str}}'
            )
        # the image goes where the chat template puts it; the mark itself is not text
        question = pair[0]["value"].replace(IMAGE_MARK, "").strip()
        turns.append((question, pair[1]["value"].strip()))
    return tuple(turns)


def read_instruct(
    path: str | Path,
    key: str = "train_data.path",
    fraction: float = 1.0,
    limit: int | None = None,
    seed: int = 0,
) -> list[InstructRecord]:
    path = Path(path)
    if not path.is_file():
        raise MissingPathError(f"{key}={str(path)!r}: no such file (a LLaVA instruction JSON)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MissingPathError(f"{key}={str(path)!r}: not valid JSON ({exc})") from None
    if not isinstance(raw, list):
        raise MissingPathError(f"{key}={str(path)!r}: expected a JSON list of records")
    records = []
    for i, record in enumerate(raw):
        where = f"{path.name} record {i}"
        if not isinstance(record, dict):
            raise MissingPathError(f"{where}: expected an object with image and conversations")
        if "image" not in record:
            continue
        if not isinstance(record["image"], str):
            raise MissingPathError(f"{where}: 'image' must be one relative path (a string)")
        records.append(
            InstructRecord(str(record.get("id", i)), record["image"], _turns(record, where))
        )
    if not records:
        raise MissingPathError(f"{key}={str(path)!r}: no records with an image")
    return take_slice(records, fraction, limit, seed)


def take_slice(records: list, fraction: float, limit: int | None, seed: int) -> list:
    if not 0.0 < fraction <= 1.0:
        raise ConfigError("train_data.fraction", fraction, "a fraction in (0, 1]")
    if limit is not None and limit < 1:
        raise ConfigError("train_data.limit", limit, "an integer >= 1, or null for all")
    if fraction < 1.0:
        keep = max(1, round(fraction * len(records)))
        picked = sorted(random.Random(seed).sample(range(len(records)), keep))
        records = [records[i] for i in picked]
    return records[:limit] if limit is not None else records


class InstructDataset(Dataset):
    """Record i -> input_ids and labels (only the answers learned; `image_tokens` placeholders
    where the compressed visual tokens go) and, unless `with_pixels=False` (the feature cache
    serves the images), the image as the processor's pixel_values.

    isolate_turns: each turn is learned as if asked alone about the image, in one sequence
    (vzexp.data.isolated_turns: position_ids and segments too), so that no answer can be read
    from an earlier turn's text."""

    def __init__(
        self,
        records: list[InstructRecord],
        image_root: str | Path,
        processor,
        image_tokens: int,
        with_pixels: bool = True,
        isolate_turns: bool = False,
    ):
        self.records, self.root = records, Path(image_root)
        if not self.root.is_dir():
            raise MissingPathError(f"train_data.image_root={str(self.root)!r}: no such directory")
        self.processor, self.with_pixels, self.isolate = processor, with_pixels, isolate_turns
        self.image_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
        self.encode = ConversationEncoder(processor, image_tokens)

    def __len__(self) -> int:
        return len(self.records)

    def image_key(self, i: int) -> str:
        return self.records[i].image

    def pixels(self, i: int) -> torch.Tensor:
        path = self.root / self.records[i].image
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
        except (OSError, ValueError) as exc:
            raise MissingPathError(
                f"train_data: the image {str(path)!r} of record {self.records[i].id!r} could not "
                f"be read ({exc}); the file is missing or corrupt"
            ) from None
        return self.processor.image_processor(image, return_tensors="pt").pixel_values[0]

    def _single_turns(self, turns) -> dict:
        parts = []
        for turn in turns:
            ids, labels = self.encode([turn])
            slot_end = len(ids) - ids[::-1].index(self.image_id)
            parts.append(
                ({"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}, slot_end)
            )
        return isolate_turns(parts)

    def __getitem__(self, i: int) -> dict:
        turns = list(self.records[i].turns)
        if self.isolate:
            item = self._single_turns(turns)
        else:
            ids, labels = self.encode(turns)
            item = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}
        item["index"] = i
        if self.with_pixels:
            item["pixel_values"] = self.pixels(i)
        return item


def collate(items: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ids/labels/mask, the samples' indices, stacked pixels if present, and
    position_ids + turn_mask for isolated turns."""
    batch = pad_right(items, pad_id)
    if "segments" in items[0]:
        batch.update(pad_isolated(items))
    batch["index"] = torch.tensor([it["index"] for it in items])
    if "pixel_values" in items[0]:
        batch["pixel_values"] = torch.stack([it["pixel_values"] for it in items])
    return batch


@dataclass
class InstructData:
    """task=tune's training data (`conf/train_data/<name>.yaml`): a LLaVA instruction JSON and
    the directory its image paths are relative to. Subclasses generate their files
    (`source()`), each in its dataset's module."""

    name: str
    path: str | None = None  # a LLaVA instruction JSON
    image_root: str | None = None  # default: the JSON's directory
    fraction: float = 1.0  # a seeded random fraction of the records (the paper tunes on 1/10)
    limit: int | None = None  # then the first N
    seed: int = 0
    max_turns: int | None = None  # keep each conversation's first N question-answer turns
    isolate_turns: bool = False  # each turn learned as if asked alone (vzexp.data.isolated_turns)

    def __post_init__(self):
        if self.max_turns is not None and self.max_turns < 1:
            raise ConfigError("train_data.max_turns", self.max_turns, "an integer >= 1, or null")
        if not 0.0 < self.fraction <= 1.0:
            raise ConfigError("train_data.fraction", self.fraction, "a fraction in (0, 1]")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("train_data.limit", self.limit, "an integer >= 1, or null for all")

    def source(self, cache_root: Path) -> tuple[Path, Path]:
        """(instruction JSON, image root). `cache_root` is where generated data is kept."""
        if self.path is None:
            raise ConfigError(
                "train_data.path", None, "a LLaVA instruction JSON (train_data.path=...)"
            )
        path = Path(self.path)
        return path, Path(self.image_root) if self.image_root else path.parent

    def records(self, cache_root: Path) -> tuple[list[InstructRecord], Path]:
        """The training records (sliced, turns cut to max_turns) and their image root."""
        path, image_root = self.source(cache_root)
        records = read_instruct(path, "train_data.path", self.fraction, self.limit, self.seed)
        if self.max_turns is not None:
            records = [replace(r, turns=r.turns[: self.max_turns]) for r in records]
        return records, image_root
