"""Small helpers shared by the scorers."""

from __future__ import annotations

from collections.abc import Callable, Iterable


def prediction(record: dict) -> str:
    """The model output, whitespace-stripped (LLaVA's generation scripts strip it too)."""
    return str(record.get("prediction") or "").strip()


def meta(record: dict) -> dict:
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
    """A scorer whose only metric is the mean per-record score."""

    def score(records: list[dict]) -> dict[str, float]:
        if not records:
            return {}
        return {"accuracy": mean(sample(r) for r in records)}

    return score
