"""What the evaluating tasks share: the results table printed at the end of a run, and the
evaluation of a model with its predictions, overlays and metrics logged to the run."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from vzexp.config import ModelKind, as_plain
from vzexp.engine.eval_loop import evaluate, sample_ids
from vzexp.engine.evaluate import summarize
from vzexp.engine.predictions import PredictionStore, config_key
from vzexp.runtime import output_dir
from vzexp.tracking import download_artifacts, is_timing_metric


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
    ids = sample_ids(dataset, settings.data.limit)
    earlier = resumed_ids(predictions, ids) if getattr(settings.task, "resume", False) else set()
    records, metrics = evaluate(settings, installed, processor, dataset, predictions, overlays)
    if not metrics:  # another rank: rank 0 reports
        return {}
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
    return metrics


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


def resumed_ids(predictions: Path, ids: list[str]) -> set[str]:
    """The samples of `ids` already predicted in `predictions` by an earlier run (those skipped
    for a bad image are tried again, so they are not among them)."""
    done = PredictionStore(predictions).done()
    return {i for i in ids if i in done and not done[i].get("skipped")}


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


def predictions_path(settings, extra: dict | None = None) -> Path:
    """Where this config's predictions are written as they come (stable across restarts);
    `extra` adds what else decides them (task=tune: the tuning that made the projector)."""
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
