"""What the benchmark scorers share: the fields of a prediction record.

A record is a dict with "id", "prediction" (the raw model output), "answer" (the gold answer) and
"meta" (the sample's extra fields: options, category, annotator answers, ...), as
vzexp.engine.evaluate writes it to the predictions file."""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable

LETTERS = string.ascii_uppercase  # option letters, in order


def prediction(record: dict) -> str:
    """The model output, whitespace-stripped (LLaVA's generation scripts strip it too)."""
    return str(record.get("prediction") or "").strip()


def meta(record: dict) -> dict:
    """The record's meta fields ({} when it has none)."""
    return record.get("meta") or {}


def annotator_answers(record: dict) -> list[str]:
    """The list of human answers of a VQA-style record: record["answers"], else
    record["meta"]["answers"] (the engine's Sample keeps extra fields in meta)."""
    answers = record.get("answers")
    if answers is None:
        answers = meta(record).get("answers")
    if answers is None:
        raise KeyError(f"record {record.get('id')!r} has no 'answers' (nor meta['answers'])")
    return [str(a) for a in answers]


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def accuracy_scorer(sample: Callable[[dict], float]) -> Callable[[list[dict]], dict[str, float]]:
    """metrics(records) whose only metric, "accuracy", is the mean per-record score; no records
    give no metrics (the official scripts divide by the count and crash there)."""

    def score(records: list[dict]) -> dict[str, float]:
        if not records:
            return {}
        return {"accuracy": mean(sample(r) for r in records)}

    return score
