"""task=score: the data config's scorer over an existing predictions file, no model (a split
its server scores: the submission file written again from it).

    python -m vzexp task=score data=pope task.predictions=outputs/.../predictions.jsonl

The file is checked against the benchmark first: every record must be a sample of it (a file
made on another benchmark is refused), and it must hold a prediction for each of the samples the
data config evaluates (data.limit, else all); task.allow_partial=true scores the records there
are and reports how many. Gold answers come from the benchmark as it is now, not from the file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from vzexp.engine.eval_loop import rescore, sample_ids, scorer_of
from vzexp.engine.evaluate import summarize
from vzexp.errors import ConfigError, MissingPathError
from vzexp.tasks.base import Context, Task
from vzexp.tasks.common import load_dataset, report_scoring, results_table

log = logging.getLogger("vzexp")


@dataclass
class ScoreTask(Task):
    """Re-score an existing predictions file with the data config's scorer."""

    name: str = "score"
    predictions: str | None = None
    allow_partial: bool = False  # score a file that lacks some of the benchmark's samples

    def __post_init__(self):
        if not self.predictions:
            raise ConfigError(
                "task.predictions",
                self.predictions,
                "the path of a predictions .jsonl file to score (task.predictions=...)",
            )

    def prepare(self, settings) -> None:
        """The file is read and matched against the benchmark before the run opens."""
        path = Path(self.predictions)
        key = f"task.predictions={str(path)!r}"
        if not path.is_file():
            raise MissingPathError(f"{key}: no such file")
        self.records = read_checked(path, key)
        if not self.records:
            raise MissingPathError(f"{key}: no prediction records in it")
        self.dataset = load_dataset(settings)
        ids = sample_ids(self.dataset, settings.data.limit)
        index = {sample_id: i for i, sample_id in enumerate(ids)}
        everywhere = (
            {self.dataset.sample_id(i) for i in range(len(self.dataset))}
            if hasattr(self.dataset, "sample_id")
            else set(ids)
        )
        name = settings.data.name
        foreign = [r["id"] for r in self.records if r["id"] not in everywhere]
        made_on = {r["data"] for r in self.records if r.get("data")} - {name}
        if made_on or foreign:
            what = (
                f"made on data={sorted(made_on)[0]}"
                if made_on
                else (
                    f"{len(foreign)} of its {len(self.records)} records are not samples of "
                    f"data={name}, e.g. id {foreign[0]!r}"
                )
            )
            raise MissingPathError(
                f"{key}: {what}; score it with the data config it was made with (data=...)"
            )
        self.records = [
            r for r in self.records if r["id"] in index
        ]  # beyond data.limit: not scored
        if len(self.records) < len(ids) and not self.allow_partial:
            raise MissingPathError(
                f"{key}: predictions for {len(self.records)} of the {len(ids)} samples data={name} "
                f"evaluates (data.limit={settings.data.limit}); give the data.limit it was made "
                "with, finish it with task=eval, or score what is there with task.allow_partial=true"
            )
        # scored now, against the benchmark's current gold answers: a file that cannot be
        # scored is refused before the run opens
        scorer = scorer_of(settings.data.scorer, self.dataset)
        self.records.sort(key=lambda r: index[r["id"]])
        for record in self.records:
            if not record.get("skipped"):
                rescore(record, self.dataset, index[record["id"]], scorer, key)
        try:
            self.metrics = summarize(self.records, "cpu", scorer)
        except KeyError as exc:  # a field every record of python -m vzexp has
            raise MissingPathError(
                f"{key}: its records have no {exc.args[0]!r}; is this a predictions file of "
                "python -m vzexp?"
            ) from None
        self.expected = len(ids)

    def run(self, settings, context: Context) -> dict[str, float]:
        records, metrics, expected = self.records, self.metrics, self.expected
        if len(records) < expected:
            log.warning("scoring a partial file: %d of %d samples", len(records), expected)
            print(f"partial: {len(records)} of {expected} samples scored", flush=True)
        metrics["expected_samples"] = float(expected)
        rescored = context.out / "predictions.rescored.jsonl"
        rescored.write_text("".join(json.dumps(r) + "\n" for r in records))
        context.tracker.log_artifact(rescored)
        context.tracker.log_metrics(metrics)
        print(results_table(metrics, settings), flush=True)
        report_scoring(settings, self.dataset, records, context.out, context.tracker)
        return metrics


def read_checked(path: Path, key: str) -> list[dict]:
    """The records of a predictions file; a line that is not a record with an id and a
    prediction is refused, naming it (a last line cut short by a kill is left out)."""
    records, seen = [], {}
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):  # cut short by a kill while it was written
                continue
            raise MissingPathError(
                f"{key}: line {n} is not JSON; is this a predictions file?"
            ) from None
        if not isinstance(record, dict) or "id" not in record:
            raise MissingPathError(f"{key}: line {n} is not a prediction record (no 'id')")
        if "prediction" not in record and not record.get("skipped") and "turns" not in record:
            raise MissingPathError(
                f"{key}: line {n} (id {record['id']!r}) has no 'prediction'; is this a "
                "predictions file of python -m vzexp?"
            )
        record["id"] = str(record["id"])
        if record["id"] in seen:
            raise MissingPathError(
                f"{key}: line {n} repeats id {record['id']!r} (line {seen[record['id']]})"
            )
        seen[record["id"]] = n
        records.append(record)
    return records
