"""What the evaluating tasks share: the results table printed at the end of a run, and the
evaluation of a model with its predictions, overlays and metrics logged to the run."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from vzexp.config import ModelKind, as_plain
from vzexp.engine.eval_loop import evaluate
from vzexp.engine.predictions import PredictionStore, config_key
from vzexp.runtime import output_dir
from vzexp.tracking import download_artifacts


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
    keep this run's records beside its config (`copy_to`), log them and the overlays, and print
    the results table."""
    overlays = output_dir() / "overlays"
    records, metrics = evaluate(settings, installed, processor, dataset, predictions, overlays)
    if not metrics:  # another rank: rank 0 reports
        return {}
    if copy_to is not None:
        PredictionStore.write(copy_to, records)
    tracker.log_artifact(copy_to or predictions)
    for picture in sorted(overlays.glob("*.png")):
        tracker.log_artifact(picture, artifact_path="overlays")
    print(results_table(metrics, settings), flush=True)
    return metrics


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
