"""Isolated turns: several questions about one image trained in one sequence, each as if asked
alone. The shared prefix (through the image slot) comes once; every turn follows it at the
positions it would have alone and attends only to the prefix and itself. Evaluation asks one
question at a time; in a plain multi-turn sequence a later answer can be copied from an earlier
one ("what color is the shape? red" -> "is there a red shape?") instead of read from the image.
Used by the tiny recipe (task.isolate_turns) and by task=tune (train_data.isolate_turns)."""

from __future__ import annotations

from typing import Any

import torch


def isolate_turns(parts: list[tuple[dict[str, Any], int]]) -> dict[str, Any]:
    """Single-turn sequences of one image (each with its slot's end) -> one sequence: the shared
    prefix through the slot once, then each turn's text at the positions it has when asked
    alone, tagged with its segment (0: the prefix, k: turn k) so that a turn attends to the
    prefix and itself only (turn_attention_mask). Evaluation asks one question at a time; in a
    plain multi-turn sequence a later answer can be copied from an earlier one ("what color is
    the triangle? red" -> "is there a red triangle?") instead of read from the image."""

    def positions(item: dict[str, Any]) -> torch.Tensor:
        return item.get("position_ids", torch.arange(len(item["input_ids"])))

    first, end = parts[0]
    prefix = first["input_ids"][:end]
    out = {key: value for key, value in first.items() if key not in ("input_ids", "labels")}
    ids, labels = [prefix], [first["labels"][:end]]
    pos, segments = [positions(first)[:end]], [torch.zeros(end, dtype=torch.long)]
    for k, (item, slot_end) in enumerate(parts, start=1):
        if slot_end != end or not torch.equal(item["input_ids"][:end], prefix):
            raise ValueError("isolate_turns: the turns do not share their prefix and image slot")
        rest = len(item["input_ids"]) - end
        ids.append(item["input_ids"][end:])
        labels.append(item["labels"][end:])
        pos.append(positions(item)[end:])
        segments.append(torch.full((rest,), k))
    out.update(
        input_ids=torch.cat(ids),
        labels=torch.cat(labels),
        position_ids=torch.cat(pos),
        segments=torch.cat(segments),
    )
    return out


def turn_attention_mask(segments: torch.Tensor) -> torch.Tensor:
    """(B, T) segments (-1: padding) -> (B, 1, T, T) bool: query i sees key j <= i of the
    prefix (segment 0) or of its own turn; padding sees itself only (no empty rows)."""
    length = segments.shape[1]
    query, key = segments[:, :, None], segments[:, None, :]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    allowed = causal & (key >= 0) & (query >= 0) & ((key == query) | (key == 0))
    return (allowed | torch.eye(length, dtype=torch.bool))[:, None]


def additive_mask(turn_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """turn_attention_mask's booleans -> the additive (B, 1, T, T) mask transformers' decoders
    take as `attention_mask` (0 where allowed, the dtype's minimum elsewhere)."""
    return torch.zeros(turn_mask.shape, dtype=dtype).masked_fill(~turn_mask, torch.finfo(dtype).min)


def pad_isolated(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Items from isolate_turns -> right-padded position_ids and their (B, 1, T, T) turn_mask."""
    pad = torch.nn.utils.rnn.pad_sequence
    segments = pad([it["segments"] for it in items], batch_first=True, padding_value=-1)
    return {
        "position_ids": pad([it["position_ids"] for it in items], batch_first=True),
        "turn_mask": turn_attention_mask(segments),
    }
