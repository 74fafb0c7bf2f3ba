"""The `Scorer` type and exact match after the usual VQA-style normalisation (case,
punctuation, articles): the built-in synthetic sets' rule, and what every benchmark's scorer is
an instance of."""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})
EXACT_MATCH_NAME = "exact_match"


def normalize_answer(text: str) -> str:
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, answer: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(answer))


@dataclass(frozen=True)
class Scorer:
    """sample(record) -> the record's score in [0, 1]; metrics(records) -> the benchmark's
    metrics. A record carries prediction, answer and meta (see vzexp.engine.evaluate)."""

    name: str
    sample: Callable[[dict], float]
    metrics: Callable[[list[dict]], dict[str, float]]


def _exact_sample(record: dict) -> float:
    return exact_match(record["prediction"], record["answer"])


def _mean_accuracy(records: list[dict]) -> dict[str, float]:
    return {"accuracy": sum(_exact_sample(r) for r in records) / max(len(records), 1)}


EXACT_MATCH = Scorer(EXACT_MATCH_NAME, _exact_sample, _mean_accuracy)
