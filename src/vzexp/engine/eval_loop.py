"""The evaluation loop of a run: which samples still need a prediction (resume), Lightning's
predict loop over them with predictions written to disk per batch, and the merged records scored
by the benchmark's scorer.

    result = evaluate(settings, installed, processor, dataset, predictions_path)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Subset

from vzexp.data.scoring import scorer_for
from vzexp.data.submission import UNSCORED, server_scored
from vzexp.engine.evaluate import EvalDataModule, Evaluator, SkipBadImages, summarize
from vzexp.engine.predictions import PredictionStore, PredictionWriter
from vzexp.engine.trainer import make_trainer, stoppable
from vzexp.errors import VzexpError
from vzexp.runtime import rank

log = logging.getLogger("vzexp")


def sample_ids(dataset, limit: int | None) -> list[str]:
    """The ids of the samples a run evaluates: the first `limit` (all when None)."""
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if hasattr(dataset, "sample_id"):
        return [dataset.sample_id(i) for i in range(count)]
    return [dataset[i].id for i in range(count)]


def pending(store: PredictionStore, ids: list[str], resume: bool, rank: int) -> list[int]:
    """Indices of the samples still to predict. With `resume` the ones already on disk are
    skipped, except samples skipped for an unreadable image (it may be fixed now); without it
    the store is emptied first (rank 0)."""
    if not resume:
        if rank == 0:
            for stale in [store.path, *store.parts()]:
                stale.unlink(missing_ok=True)
        return list(range(len(ids)))
    done = store.done()
    retried = [i for i, sample_id in enumerate(ids) if done.get(sample_id, {}).get("skipped")]
    todo = sorted([i for i, sample_id in enumerate(ids) if sample_id not in done] + retried)
    if done and rank == 0:
        log.info(
            "resuming %s: %d of %d samples already done, %d skipped ones tried again",
            store.path,
            len(ids) - len(todo),
            len(ids),
            len(retried),
        )
    return todo


@dataclass
class Evaluation:
    """What an evaluation gives rank 0: the records in sample order, the metrics, the ids of
    the samples evaluated and those taken from an earlier run's predictions (resumed)."""

    records: list[dict]
    metrics: dict[str, float]
    ids: list[str]
    resumed: set[str]


def evaluate(
    settings, installed, processor, dataset, predictions: Path, overlay_dir: Path | None = None
) -> Evaluation | None:
    """Predict every sample of `dataset` (up to data.limit) not yet in the predictions file with
    the model `installed` patched (its vzexp.models.install handle), then merge and score.
    Returns the Evaluation on rank 0 and None on the others."""
    store = PredictionStore(predictions)
    task, data = settings.task, settings.data
    ids = sample_ids(dataset, data.limit)
    scorer = scorer_of(data.scorer, dataset)
    trainer = make_trainer(
        settings.trainer,
        default_root_dir=str(predictions.parent),
        callbacks=[PredictionWriter(store, {"data": data.name})],
    )
    todo = pending(store, ids, getattr(task, "resume", False), rank())
    if todo:
        source = SkipBadImages(dataset) if data.on_bad_image == "skip" else dataset
        datamodule = EvalDataModule(
            Subset(source, todo), processor, data.batch_size, num_workers=data.num_workers
        )
        overlays = getattr(task, "overlays", 0)
        evaluator = Evaluator(
            installed,
            processor,
            task.max_new_tokens,
            scorer.sample,
            overlays=overlays,
            overlay_dir=overlay_dir if overlays else None,
            dialogue_baseline=getattr(task, "dialogue_baseline", False),
        )
        # a signal stops the loop once its batch is written (PredictionWriter)
        stoppable(
            lambda: trainer.predict(evaluator, datamodule=datamodule, return_predictions=False)
        )
        # every rank's part file is complete before rank 0 merges them (DDP)
        trainer.strategy.barrier("vzexp-predictions-written")
    if trainer.global_rank != 0:
        return None
    records = refresh_gold(store.merge(ids), dataset, scorer, store.path)
    resumed = set(ids) - {ids[i] for i in todo}
    return Evaluation(records, summarize(records, settings.model.device, scorer), ids, resumed)


def scorer_of(value: str, dataset):
    """The Scorer `data.scorer` names, or none (UNSCORED) for a split whose server scores it
    (no sample has a gold answer: vzexp.data.submission)."""
    return UNSCORED if server_scored(dataset) else scorer_for(value)


def gold(dataset, i: int) -> dict:
    """Sample i's gold fields as the dataset has them now: a benchmark's parsed items (no image
    is read), else the sample itself, with a dialogue's turns (question, answer, type each)."""
    items = getattr(dataset, "items", None)
    if items is not None:
        item = items[i]
        return {"answer": item["answer"], "type": item["meta"].get("type"), "meta": item["meta"]}
    sample = dataset[i]
    fields = {"answer": sample.answer, "type": sample.meta.get("type"), "meta": sample.meta}
    if sample.turns:
        fields["turns"] = sample.turns
    return fields


class StalePredictions(VzexpError):
    """A predictions file whose records were made for other questions than the dataset's."""


def refresh_gold(records: list[dict], dataset, scorer, path: Path | None = None) -> list[dict]:
    """Every record (of sample i, in order) scored against the dataset's current gold answers
    (`rescore`); records of skipped images keep theirs."""
    for i, record in enumerate(records):
        if not record.get("skipped"):
            rescore(record, dataset, i, scorer, path)
    return records


def rescore(record: dict, dataset, i: int, scorer, path: Path | str | None = None) -> None:
    """Sample i's record scored against its gold answers as the dataset has them now, so that
    answers fixed after the predictions were made count without predicting again; a dialogue
    turn by turn (its score is its turns' mean). `path` names the predictions file in the
    error for a dialogue whose questions are no longer the dataset's."""
    fresh = gold(dataset, i)
    turns = fresh.pop("turns", None)
    record.update(fresh)
    if "turns" not in record:
        record["correct"] = scorer.sample(record)
        return
    asked = [t["question"] for t in record["turns"]]
    if turns is None or asked != [t["question"] for t in turns]:
        raise StalePredictions(
            f"{path or 'the predictions file'}: the dialogue {record['id']!r} was predicted for "
            "other questions than the dataset asks now; rerun with task.resume=false"
        )
    for turn, now in zip(record["turns"], turns):
        turn.update(answer=now["answer"], type=now.get("type"), meta=record["meta"])
        turn["correct"] = scorer.sample(turn)
    record["correct"] = sum(t["correct"] for t in record["turns"]) / len(record["turns"])
