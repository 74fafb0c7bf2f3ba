"""task=score: the data config's scorer over an existing predictions file, no model.

python -m vzexp task=score data=pope task.predictions=outputs/.../predictions.jsonl
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vzexp.data.scoring import scorer_for
from vzexp.engine.evaluate import summarize
from vzexp.engine.predictions import read_records
from vzexp.errors import ConfigError, MissingPathError
from vzexp.tasks.base import Context, Task
from vzexp.tasks.common import results_table


@dataclass
class ScoreTask(Task):
    """Re-score an existing predictions file with the data config's scorer."""

    name: str = "score"
    predictions: str | None = None

    def __post_init__(self):
        if not self.predictions:
            raise ConfigError(
                "task.predictions",
                self.predictions,
                "the path of a predictions .jsonl file to score (task.predictions=...)",
            )

    def run(self, settings, context: Context) -> dict[str, float]:
        path = Path(self.predictions)
        if not path.is_file():
            raise MissingPathError(f"task.predictions={str(path)!r}: no such file")
        records = read_records(path)
        if not records:
            raise MissingPathError(f"task.predictions={str(path)!r}: no prediction records in it")
        scorer = scorer_for(settings.data.scorer)
        for record in records:
            record["correct"] = scorer.sample(record)
        metrics = summarize(records, "cpu", scorer)
        rescored = context.out / "predictions.rescored.jsonl"
        rescored.write_text("".join(json.dumps(r) + "\n" for r in records))
        context.tracker.log_artifact(rescored)
        context.tracker.log_metrics(metrics)
        print(results_table(metrics, settings), flush=True)
        return metrics
