"""`scorer_for(value)`: a data config's `data.scorer` as a Scorer (vzexp.data.scorer).

`data.scorer` is either `exact_match` or the dotted path of a Scorer object, e.g.
`vzexp.data.benchmarks.pope.scorer`: each benchmark module defines its own (and its variants), so a
new benchmark is one module, one data YAML naming it, and its test, with no table to edit here.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable

from vzexp.data.scorer import (  # noqa: F401 (the engine's and tests' names for them)
    EXACT_MATCH,
    EXACT_MATCH_NAME,
    Scorer,
    exact_match,
    normalize_answer,
)
from vzexp.data.submission import Submission
from vzexp.errors import ConfigError, first_line

_KEY = "data.scorer"


def builtin_objects(kind: type) -> list[str]:
    """The dotted paths of the `kind` objects (Scorers, Submissions) that the benchmark modules
    of vzexp.data.benchmarks define."""
    import vzexp.data.benchmarks as package

    found = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        found += [
            f"{module.__name__}.{attr}"
            for attr, value in vars(module).items()
            if isinstance(value, kind)
        ]
    return sorted(found)


def builtin_scorers() -> list[str]:
    """The dotted paths of the Scorers the benchmark modules of vzexp.data.benchmarks define."""
    return builtin_objects(Scorer)


def _allowed() -> str:
    return (
        f"{EXACT_MATCH_NAME}, or the dotted path of a vzexp.data.scoring.Scorer "
        f"(module.attribute); built in: {', '.join(builtin_scorers())}"
    )


def dotted_object(key: str, value: str, allowed: Callable[[], str]):
    """The object a config key names by its dotted path (`module.attribute`), or one
    ConfigError line saying why it cannot be had (`allowed()`: what the key takes)."""
    module_name, _, attr = str(value).rpartition(".")
    if not module_name or not attr:
        raise ConfigError(key, value, allowed())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            key, value, f"module {module_name} cannot be imported ({first_line(exc)}); {allowed()}"
        ) from None
    found = getattr(module, attr, None)
    if found is None:
        raise ConfigError(key, value, f"module {module_name} has no {attr}; {allowed()}")
    return found


def scorer_for(value: str) -> Scorer:
    """The Scorer a data config names (`data.scorer`): `exact_match`, or `module.attribute`
    naming an object with `name`, `sample(record)` and `metrics(records)`."""
    if value == EXACT_MATCH_NAME:
        return EXACT_MATCH
    scorer = dotted_object(_KEY, value, _allowed)
    if not all(callable(getattr(scorer, f, None)) for f in ("sample", "metrics")) or not hasattr(
        scorer, "name"
    ):
        attr = str(value).rpartition(".")[2]
        raise ConfigError(
            _KEY, value, f"{attr} is not a Scorer (name, sample, metrics); {_allowed()}"
        )
    return scorer


_SUBMISSION_KEY = "data.submission"


def _allowed_submissions() -> str:
    return (
        "null, or the dotted path of a vzexp.data.submission.Submission (module.attribute); "
        f"built in: {', '.join(builtin_objects(Submission))}"
    )


def submission_for(value: str) -> Submission:
    """The Submission `data.submission` names; one ConfigError line when it is not one or when
    a module its writer needs is not installed."""
    found = dotted_object(_SUBMISSION_KEY, value, _allowed_submissions)
    if not isinstance(found, Submission):
        raise ConfigError(_SUBMISSION_KEY, value, f"not a Submission; {_allowed_submissions()}")
    for module in found.requires:
        if importlib.util.find_spec(module) is None:
            raise ConfigError(
                _SUBMISSION_KEY,
                value,
                f"the file for {found.server} needs {module}: pip install {module}",
            )
    return found
