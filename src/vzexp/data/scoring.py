"""Scoring: exact match after the usual VQA-style normalisation (case, punctuation, articles),
and `scorer_for(name)`, the benchmark scorers by the name a data config gives (`data.scorer`)."""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass

from vzexp.errors import ConfigError

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def normalize_answer(text: str) -> str:
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, answer: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(answer))


@dataclass
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


def scorer_for(name: str) -> Scorer:
    """The built-in sets' exact match, or a benchmark's official scorer (vzexp.data.scorers)."""
    from vzexp.data.scorers import SAMPLE_SCORES, SCORERS

    scorers = {"exact_match": Scorer("exact_match", _exact_sample, _mean_accuracy)}
    scorers |= {key: Scorer(key, SAMPLE_SCORES[key], SCORERS[key]) for key in SCORERS}
    if name not in scorers:
        raise ConfigError("data.scorer", name, f"one of {', '.join(sorted(scorers))}")
    return scorers[name]
