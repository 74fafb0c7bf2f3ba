"""Predictions on disk, written per batch as they come, so that a killed run loses nothing.

Each process (DDP rank) appends to its own part file next to the predictions file; a restarted
run with the same config reads the file and the parts, skips the samples already done, and at the
end rank 0 merges everything into the predictions file, one line per sample in dataset order.
A line cut short by a kill is ignored (that sample is simply predicted again), and samples
skipped for a bad image are tried again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import BasePredictionWriter

from vzexp import interrupt


def config_key(node: dict[str, Any]) -> str:
    """A short stable hash of the parts of the config that decide the predictions."""
    text = json.dumps(node, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def read_records(path: Path) -> list[dict]:
    """The complete JSON lines of a predictions file (a line cut short by a kill is skipped)."""
    records = []
    if not path.is_file():
        return records
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class PredictionStore:
    def __init__(self, path: Path):
        self.path = Path(path)

    def part(self, rank: int) -> Path:
        return self.path.with_name(f"{self.path.name}.rank{rank}.part")

    def parts(self) -> list[Path]:
        return sorted(self.path.parent.glob(f"{self.path.name}.rank*.part"))

    def done(self) -> dict[str, dict]:
        """Every sample already predicted, by id: the first record of an id wins, except that
        a prediction replaces a record of the sample skipped for a bad image (a rerun after the
        image was fixed)."""
        found: dict[str, dict] = {}
        for source in [self.path, *self.parts()]:
            for record in read_records(source):
                earlier = found.get(record["id"])
                if earlier is None or (earlier.get("skipped") and not record.get("skipped")):
                    found[record["id"]] = record
        return found

    def append(self, rank: int, records: Iterable[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.part(rank).open("a") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
            f.flush()

    def merge(self, order: list[str]) -> list[dict]:
        """Rank 0, after all ranks finished: the records of `order`, in that order. The file
        keeps every sample ever predicted for this config (`order` first), so a later run with
        a smaller data.limit loses nothing."""
        done = self.done()
        missing = [i for i in order if i not in done]
        if missing:
            raise RuntimeError(f"{len(missing)} samples have no prediction, e.g. {missing[:3]}")
        records = [done[i] for i in order]
        wanted = set(order)
        self.write(self.path, records + [r for i, r in done.items() if i not in wanted])
        for part in self.parts():
            part.unlink()
        return records

    @staticmethod
    def write(path: Path, records: list[dict]) -> None:
        """Write records as JSON lines, atomically (a temporary file renamed into place)."""
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
        tmp.replace(path)


class PredictionWriter(BasePredictionWriter):
    """Appends each batch's records to this rank's part file as soon as the batch is done; a
    SIGTERM/SIGINT received during the batch stops the loop right after (vzexp.interrupt)."""

    def __init__(self, store: PredictionStore, fields: dict | None = None):
        super().__init__(write_interval="batch")
        self.store = store
        self.fields = fields or {}  # added to every record (its benchmark, for task=score)

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ):
        self.store.append(trainer.global_rank, [{**r, **self.fields} for r in prediction])
        interrupt.check()
