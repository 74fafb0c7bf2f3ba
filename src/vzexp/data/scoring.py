"""Scoring: the `Scorer` type, exact match (the built-in synthetic sets' rule) and
`scorer_for(value)`, which turns a data config's `data.scorer` into a Scorer.

`data.scorer` is either `exact_match` or the dotted path of a Scorer object, e.g.
`vzexp.data.benchmarks.pope.scorer`: each benchmark module defines its own (and its variants), so a
new benchmark is one module, one data YAML naming it, and its test, with no table to edit here.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import string
from collections.abc import Callable
from dataclasses import dataclass

from vzexp.errors import ConfigError, first_line

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})
_KEY = "data.scorer"
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


def builtin_scorers() -> list[str]:
    """The dotted paths of the Scorers the benchmark modules of vzexp.data.benchmarks define."""
    import vzexp.data.benchmarks as package

    found = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        found += [
            f"{module.__name__}.{attr}"
            for attr, value in vars(module).items()
            if isinstance(value, Scorer)
        ]
    return sorted(found)


def _allowed() -> str:
    return (
        f"{EXACT_MATCH_NAME}, or the dotted path of a vzexp.data.scoring.Scorer "
        f"(module.attribute); built in: {', '.join(builtin_scorers())}"
    )


def scorer_for(value: str) -> Scorer:
    """The Scorer a data config names (`data.scorer`): `exact_match`, or `module.attribute`
    naming an object with `name`, `sample(record)` and `metrics(records)`."""
    if value == EXACT_MATCH_NAME:
        return EXACT_MATCH
    module_name, _, attr = str(value).rpartition(".")
    if not module_name or not attr:
        raise ConfigError(_KEY, value, _allowed())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            _KEY,
            value,
            f"module {module_name} cannot be imported ({first_line(exc)}); {_allowed()}",
        ) from None
    scorer = getattr(module, attr, None)
    if scorer is None:
        raise ConfigError(_KEY, value, f"module {module_name} has no {attr}; {_allowed()}")
    if not all(callable(getattr(scorer, f, None)) for f in ("sample", "metrics")) or not hasattr(
        scorer, "name"
    ):
        raise ConfigError(
            _KEY, value, f"{attr} is not a Scorer (name, sample, metrics); {_allowed()}"
        )
    return scorer
