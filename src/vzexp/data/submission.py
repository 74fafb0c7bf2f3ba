"""Splits scored by a server. Where a benchmark's gold answers are not published (VQAv2
test-dev, MMBench test), its server scores a file of predictions in its own format. vzexp knows
such a split by its samples: none has a gold answer (the reader gives each `answer` None). A run
on it scores nothing (its metrics are the sample count and the timings) and writes the file that
`data.submission` names beside its predictions; a split where only some samples have a gold
answer is refused before the model loads (vzexp.tasks.common.load_dataset).

`data.submission` is the dotted path of a `Submission` that the benchmark's module defines, as
`data.scorer` names its Scorer: e.g. vzexp.data.benchmarks.vqav2.submission
(vzexp.data.scoring.submission_for looks it up).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vzexp.data.scorer import Scorer


@dataclass(frozen=True)
class Submission:
    """`write(records, dataset, path)` writes the server's file at `path` from the records of a
    run on `dataset` (every sample, or the first data.limit ones); `server` names who scores it,
    for the run's log; `filename` is the file's name beside the run's predictions; `requires`
    lists the modules the writer imports, checked before any model loads."""

    server: str
    filename: str
    write: Callable[[list[dict], Any, Path], None]
    requires: tuple[str, ...] = ()


# The scorer of a server-scored split: no per-sample score, no metrics.
UNSCORED = Scorer("none", lambda record: None, lambda records: {})


def server_scored(dataset) -> bool:
    """True when no sample of a file-backed benchmark has a gold answer (its server scores it);
    generated datasets (no `items`) always have theirs."""
    items = getattr(dataset, "items", None)
    return bool(items) and all(item["answer"] is None for item in items)
