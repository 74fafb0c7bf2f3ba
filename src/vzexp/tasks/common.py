"""What the evaluating tasks share: the results table printed at the end of a run, and the
evaluation of a model with its predictions, overlays and metrics logged to the run."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from functools import partial
from pathlib import Path

from hydra.utils import instantiate

from vzexp.config import ModelKind, as_plain
from vzexp.data.scoring import scorer_for, submission_for
from vzexp.data.submission import server_scored
from vzexp.engine.eval_loop import evaluate
from vzexp.engine.evaluate import summarize
from vzexp.engine.predictions import PredictionStore, config_key
from vzexp.errors import VzexpError, first_line
from vzexp.runtime import output_dir
from vzexp.tracking import download_artifacts, is_timing_metric

log = logging.getLogger("vzexp")


class DataError(VzexpError):
    """A benchmark whose content cannot be evaluated (empty, duplicate ids)."""


def load_dataset(settings):
    """The data config's dataset, instantiated before any model loads (its files are read and
    its values checked now), refused when empty or when two samples share an id (their
    predictions would be scored against one gold answer)."""
    try:
        dataset = instantiate(settings.data.dataset)
    except VzexpError:
        raise
    except Exception as exc:  # Hydra wraps the dataset's own error: what is behind it
        chain, cause = [], exc
        while cause is not None and cause not in chain:
            chain.append(cause)
            cause = cause.__cause__ or cause.__context__
        ours = next((c for c in chain if isinstance(c, VzexpError)), None)
        if ours is not None:
            raise ours from None
        root = chain[-1]
        if isinstance(root, (KeyError, IndexError)):  # a record without a field it needs
            raise DataError(
                f"data={settings.data.name}: a record of its files could not be read "
                f"({type(root).__name__}: {first_line(root)}); check the benchmark's files under "
                f"data.dataset.root={settings.data.dataset.get('root')!r}"
            ) from None
        raise
    if len(dataset) == 0:
        raise DataError(
            f"data={settings.data.name}: the benchmark has no samples; check its files "
            f"(data.dataset.root={settings.data.dataset.get('root')!r}) and its split"
        )
    if hasattr(dataset, "sample_id"):
        counts = Counter(dataset.sample_id(i) for i in range(len(dataset)))
        repeated = [k for k, n in counts.items() if n > 1]
        if repeated:
            raise DataError(
                f"data={settings.data.name}: {len(repeated)} sample id(s) repeated, e.g. "
                f"{repeated[0]!r} ({counts[repeated[0]]} times); one sample per id: remove or "
                "renumber the duplicate questions"
            )
    check_gold(settings, dataset)
    return dataset


def check_gold(settings, dataset) -> None:
    """A benchmark split is scored here (every sample has a gold answer, `check_scorable`) or
    by its server (none has: `data.submission` must name the file to write, and what its writer
    needs must be installed); one with only some answers is refused."""
    items = getattr(dataset, "items", None)
    if items is None:
        return
    missing = [item["id"] for item in items if item["answer"] is None]
    name = settings.data.name
    if not missing:
        check_scorable(settings, dataset)
    elif len(missing) < len(items):
        raise DataError(
            f"data={name}: {len(missing)} of its {len(items)} samples have no gold answer, e.g. "
            f"{missing[0]!r}; a split has answers for all its samples (scored here) or for none "
            "(scored by its server): check its annotations"
        )
    elif not settings.data.submission:
        raise DataError(
            f"data={name}: no sample has a gold answer (a split its server scores) and "
            "data.submission=null names no file for the server: nothing to score or submit"
        )
    else:
        submission_for(settings.data.submission)


def check_scorable(settings, dataset) -> None:
    """Each benchmark sample's gold fields are what its scorer reads (e.g. VQAv2's annotator
    answers), tried by scoring the gold answer as if predicted, so that an annotation file
    lacking them fails now rather than after the model has run."""
    items = dataset.items
    scorer = scorer_for(settings.data.scorer)
    for item in items:
        record = {"id": item["id"], "prediction": item["answer"], "answer": item["answer"]}
        record.update(type=item["meta"].get("type"), meta=item["meta"])
        try:
            scorer.sample(record)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise DataError(
                f"data={settings.data.name}: sample {item['id']!r} cannot be scored by "
                f"data.scorer={settings.data.scorer} ({first_line(exc)}); check its annotations "
                f"(data.dataset.annotations) and that data.scorer fits the benchmark"
            ) from None


def data_digest(dataset) -> str | None:
    """What of a file-backed benchmark decides its predictions: each sample's id and question,
    and its image: the identity (size, mtime) of its image file, or, when the rows hold the
    images (lmms-eval's parquet, MMBench's TSV), the content of the columns the reader names as
    deciding a prediction (`rows_digest`: question, options, image), else the identity of the
    parquet files that hold them. Gold answers are left out: they are re-read at scoring, so
    fixing them re-scores without re-predicting. Generated datasets (no `items`) are decided by
    their config; a dataset may define `fingerprint()` instead."""
    if hasattr(dataset, "fingerprint"):
        return dataset.fingerprint()
    items = getattr(dataset, "items", None)
    if items is None:
        return None
    digest = hashlib.sha256()
    inline = False
    for item in items:
        digest.update(f"{item.get('id')}\0{item.get('question')}\0".encode())
        bound = [
            d
            for d in (getattr(item.get("image"), "__defaults__", None) or ())
            if isinstance(d, (str, Path))
        ]  # a loader bound to a file: `lambda path=...:`
        for path in bound:
            digest.update(file_identity(Path(path)).encode())
        inline = inline or not bound
    root = getattr(dataset, "root", None)
    if inline and hasattr(dataset, "rows_digest"):  # images in the rows: what decides
        digest.update(dataset.rows_digest().encode())
    elif inline and root is not None:  # a reader that names no columns: the files that hold them
        for path in sorted(Path(root).rglob("*.parquet")):
            digest.update(file_identity(path).encode())
    return digest.hexdigest()[:12]


def file_identity(path: Path) -> str:
    try:
        stat = path.stat()
    except OSError:
        return f"{path}:missing;"
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns};"


def results_table(metrics: dict[str, float], settings) -> str:
    rows = [
        ("model", settings.model.name),
        ("compressor", settings.compressor.get("name", "?")),
        ("data", settings.data.name),
    ]
    rows += [(k, f"{v:.4g}") for k, v in metrics.items()]
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'':{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k:{width}} | {v} |" for k, v in rows]
    return "\n".join(lines)


def evaluate_and_log(
    settings, installed, processor, dataset, predictions: Path, tracker, copy_to: Path | None = None
) -> dict[str, float]:
    """Evaluate the model `installed` patched (resuming from `predictions`), then on rank 0:
    keep this run's records beside its config (`copy_to`), log them, the overlays, the
    effective sample count and the dataset as the run's input, and print the results table.
    Timing metrics cover the samples computed in this run only (`own_timing`)."""
    overlays = output_dir() / "overlays"
    result = evaluate(settings, installed, processor, dataset, predictions, overlays)
    if result is None:  # another rank: rank 0 reports
        return {}
    records, metrics, ids, earlier = result.records, result.metrics, result.ids, result.resumed
    tracker.log_params({"data.samples": len(ids)})
    split = settings.data.dataset.get("split") if settings.data.dataset else None
    tracker.log_dataset(settings.data.name, ids, split=split, limit=settings.data.limit)
    metrics = own_timing(metrics, records, earlier, settings.model.device, tracker)
    count = getattr(settings.task, "overlays", 0)
    if earlier and count and not any(overlays.glob("*.png")):  # no sample ran: draw them now
        draw_overlays(installed, processor, dataset, count, overlays)
    if copy_to is not None:
        PredictionStore.write(copy_to, records)
    tracker.log_artifact(copy_to or predictions)
    for picture in sorted(overlays.glob("*.png")):
        tracker.log_artifact(picture, artifact_path="overlays")
    print(results_table(metrics, settings), flush=True)
    report_scoring(settings, dataset, records, (copy_to or predictions).parent, tracker)
    return metrics


def report_scoring(settings, dataset, records: list[dict], directory: Path, tracker) -> None:
    """Say where the run's split is scored (tag `vzexp.scored`, and the log): here by
    data.scorer, or, for a split whose server holds the answers, by that server only, from the
    submission file written into `directory` (beside the predictions) and logged."""
    name = settings.data.name
    if not server_scored(dataset):
        tracker.set_tags({"vzexp.scored": f"here: data.scorer={settings.data.scorer}"})
        log.info("data=%s: scored here by data.scorer=%s", name, settings.data.scorer)
        return
    submission = submission_for(settings.data.submission)
    path = directory / submission.filename
    submission.write(records, dataset, path)
    tracker.log_artifact(path)
    said = f"none: no gold answers; submit {path.name} to {submission.server}"
    tracker.set_tags({"vzexp.scored": said})
    log.info("data=%s: scored by its server only; submission file: %s", name, path)
    print(f"scored: {said} ({path})", flush=True)


def draw_overlays(installed, processor, dataset, count: int, directory: Path) -> None:
    """The kept-token overlays of the first `count` samples, drawn by running them once more
    through the model `installed` patched (one batch, one new token): a run that resumed every
    prediction still shows what its strategy kept. Dialogue samples have none."""
    import torch

    from vzexp.engine.evaluate import Collator, Evaluator

    samples = [dataset[i] for i in range(min(count, len(dataset)))]
    batch = Collator(processor)(samples)
    if batch["inputs"] is None:
        return
    model = installed.model
    batch["inputs"] = {
        k: v.to(model.device, model.dtype if v.is_floating_point() else v.dtype)
        if isinstance(v, torch.Tensor)
        else v
        for k, v in batch["inputs"].items()
    }
    evaluator = Evaluator(installed, processor, 1, overlays=count, overlay_dir=directory)
    with torch.no_grad():
        evaluator.generate_step(batch, 0)


def own_timing(metrics: dict, records: list[dict], earlier: set[str], device: str, tracker):
    """`metrics` with the timing figures of the samples computed in this run only: a run that
    resumed N of M samples is tagged `vzexp.resumed=N of M`, and when it computed none its
    timing metrics are left out with a `vzexp.timing` tag saying why."""
    if not earlier:
        return metrics
    tracker.set_tags({"vzexp.resumed": f"{len(earlier)} of {len(records)}"})
    timed = {k: v for k, v in metrics.items() if not is_timing_metric(k)}
    fresh = [r for r in records if r["id"] not in earlier]
    if not fresh:
        tracker.set_tags(
            {
                "vzexp.timing": f"none: all {len(records)} samples were resumed from an earlier "
                "run's predictions, whose timings belong to that run"
            }
        )
        return timed
    own = summarize(fresh, device)
    return {**timed, **{k: v for k, v in own.items() if is_timing_metric(k)}}


def predictions_path(settings, extra: dict | None = None, dataset=None) -> Path:
    """Where this config's predictions are written as they come (stable across restarts);
    `extra` adds what else decides them (task=tune: the tuning that made the projector), and
    `dataset` its files' digest (`data_digest`), so that changed data is predicted anew."""
    decisive = {
        "model": as_plain(settings.model),
        "compressor": settings.compressor,
        "data": {"name": settings.data.name, "dataset": settings.data.dataset},
        "tokens": settings.tokens,
        "seed": settings.seed,
        "max_new_tokens": settings.task.max_new_tokens,
    }
    if settings.model.kind != ModelKind.checkpoint:
        decisive.update(encoder=as_plain(settings.encoder), llm=as_plain(settings.llm))
    if str(settings.trainer.precision) != "32-true":  # autocast changes the numbers; the
        decisive["precision"] = str(settings.trainer.precision)  # default keeps older keys
    if dataset is not None and (digest := data_digest(dataset)) is not None:
        decisive["data_files"] = digest
    decisive.update(extra or {})
    name = f"{settings.data.name}-{settings.model.name}-{settings.compressor.get('name')}"
    name += f"-t{settings.tokens}-{config_key(decisive)}.jsonl"
    return Path(getattr(settings.task, "predictions_dir", "predictions")) / name


def projector_download(settings):
    """(run id, artifact path) -> local directory, from this run's tracking store: how
    `model.projector=<run id>` reaches the model loader."""
    return partial(download_artifacts, uri=settings.logger.tracking_uri)


def log_job_log(tracker, out: Path) -> None:
    """The job's log file (Hydra writes `<output dir>/<job name>.log`) as an artifact, as far
    as it is written when the task ends."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        path = out / f"{HydraConfig.get().job.name}.log"
        if path.is_file():
            tracker.log_artifact(path)
