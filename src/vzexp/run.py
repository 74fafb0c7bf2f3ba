"""`run(cfg)`: validate -> MLflow run -> load model -> install compressor -> evaluate -> log."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vzexp.config import ModelKind, VzexpConfig, as_plain, validate
from vzexp.models.load import build_compressor, load_model
from vzexp.tracking import download_artifacts, experiment_name, tracked_run

log = logging.getLogger("vzexp")


def output_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


def projector_download(settings: VzexpConfig):
    """(run id, artifact path) -> local directory, from this run's tracking store: how
    `model.projector=<run id>` reaches the model loader."""
    from functools import partial

    return partial(download_artifacts, uri=settings.logger.tracking_uri)


def logged_params(cfg: DictConfig, settings: VzexpConfig) -> dict[str, Any]:
    params = OmegaConf.to_container(cfg, resolve=True)
    params.pop("hydra", None)
    if settings.model.kind == ModelKind.checkpoint:  # encoder and LLM come from the checkpoint
        params.pop("encoder", None)
        params.pop("llm", None)
    return params


def hydra_choices() -> dict[str, str]:
    from hydra.core.hydra_config import HydraConfig

    return dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}


def hydra_tags() -> dict[str, str]:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    tags = {
        f"choice.{k}": str(v) for k, v in hc.runtime.choices.items() if not k.startswith("hydra")
    }
    tags["vzexp.overrides"] = " ".join(hc.overrides.task)[:5000]
    if hc.mode.name == "MULTIRUN":
        from vzexp.sweep import parent_run_id

        if parent := parent_run_id(hc.sweep.dir):
            tags["mlflow.parentRunId"] = parent
    return tags


def results_table(metrics: dict[str, float], settings: VzexpConfig) -> str:
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


def rank() -> int:
    """This process's rank in a multi-process (DDP) run: Lightning starts the other ranks with
    LOCAL_RANK/RANK set; only rank 0 tracks, prints and scores."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def preflight(settings: VzexpConfig, out: Path) -> None:
    from vzexp.preflight import check_devices, check_tracking_server
    from vzexp.tracking import tracking_uri

    check_devices(settings.model.device, settings.trainer.accelerator)
    if settings.model.projector:
        from vzexp.models.projector import RUN_ID, resolve

        if not RUN_ID.match(settings.model.projector):  # a path: checked before any model loads
            resolve(settings.model.projector)
    out.mkdir(parents=True, exist_ok=True)
    if settings.logger.name == "mlflow" and rank() == 0:
        check_tracking_server(tracking_uri(settings.logger.tracking_uri))


def run(cfg: DictConfig) -> dict[str, float]:
    settings = validate(cfg)
    task = settings.task.name
    building, scoring, tuning = task == "build_tiny", task == "score", task == "tune"
    compressor = None if building or scoring else build_compressor(settings)
    if tuning:  # every stage of a staged recipe composed and checked before anything runs
        from vzexp.stages import compose_stages

        stages = compose_stages(settings)
    out = output_dir()
    preflight(settings, out)
    params = logged_params(cfg, settings)
    default_name = (
        task if building or scoring else f"{settings.compressor.get('name')}-t{settings.tokens}"
    )
    with tracked_run(
        enabled=settings.logger.name == "mlflow" and rank() == 0,
        params=params,
        experiment_name=experiment_name(settings.logger.experiment_name, hydra_choices()),
        run_name=settings.logger.run_name or default_name,
        uri=settings.logger.tracking_uri,
        tags=hydra_tags(),
    ) as tracker:
        if rank() == 0:
            config_file = out / "resolved_config.yaml"
            config_file.write_text(OmegaConf.to_yaml(OmegaConf.create(params)))
            tracker.log_artifact(config_file)
        if building:
            from vzexp.models.tiny_recipe import build_tiny

            return build_tiny(settings, tracker, out, predictor(settings, tracker))
        if scoring:
            return score_file(settings, tracker, out)
        if tuning:
            from vzexp.tune import tune_and_evaluate

            return tune_and_evaluate(settings, compressor, out, tracker, stages)
        return evaluate(settings, compressor, out, tracker)


def predictions_path(settings: VzexpConfig, extra: dict | None = None) -> Path:
    """Where this config's predictions are written as they come (stable across restarts);
    `extra` adds what else decides them (task=tune: the tuning that made the projector)."""
    from vzexp.engine.predictions import config_key

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


def sample_ids(dataset, limit: int | None) -> list[str]:
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if hasattr(dataset, "sample_id"):
        return [dataset.sample_id(i) for i in range(count)]
    return [dataset[i].id for i in range(count)]


def trainer_settings(settings: VzexpConfig) -> dict[str, Any]:
    """The `trainer` group as Lightning Trainer arguments (evaluation and tuning alike)."""
    t = settings.trainer
    return dict(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
    )


def predictor(settings: VzexpConfig, tracker):
    """predict(installed, processor, dataset, predictions_path) -> metrics, with this run's
    trainer settings (`installed`: the model's vzexp.models.install handle). Predictions go to disk per batch (each rank its own part) and resume; rank 0
    merges them, scores, logs the file and prints the results table."""

    def predict(
        installed, processor, dataset, predictions: Path, copy_to: Path | None = None
    ) -> dict[str, float]:
        import lightning as L
        from torch.utils.data import Subset

        from vzexp.data.scoring import scorer_for
        from vzexp.engine.evaluate import EvalDataModule, Evaluator, summarize
        from vzexp.engine.predictions import PredictionStore, PredictionWriter

        store = PredictionStore(predictions)
        resume = getattr(settings.task, "resume", False)
        if not resume and rank() == 0:
            for stale in [store.path, *store.parts()]:
                stale.unlink(missing_ok=True)
        ids = sample_ids(dataset, settings.data.limit)
        done = store.done() if resume else {}
        # samples skipped for an unreadable image are tried again (the image may be fixed now)
        retried = [i for i, sample_id in enumerate(ids) if done.get(sample_id, {}).get("skipped")]
        todo = [i for i, sample_id in enumerate(ids) if sample_id not in done] + retried
        todo.sort()
        if done and rank() == 0:
            log.info(
                "resuming %s: %d of %d samples already done, %d skipped ones tried again",
                store.path,
                len(ids) - len(todo),
                len(ids),
                len(retried),
            )
        scorer = scorer_for(settings.data.scorer)
        trainer = L.Trainer(
            **trainer_settings(settings),
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            default_root_dir=str(predictions.parent),
            callbacks=[PredictionWriter(store)],
        )
        if todo:
            from vzexp.engine.evaluate import SkipBadImages

            source = SkipBadImages(dataset) if settings.data.on_bad_image == "skip" else dataset
            datamodule = EvalDataModule(
                Subset(source, todo),
                processor,
                settings.data.batch_size,
                None,
                settings.data.num_workers,
            )
            overlays = getattr(settings.task, "overlays", 0)
            evaluator = Evaluator(
                installed,
                processor,
                settings.task.max_new_tokens,
                scorer.sample,
                overlays=overlays,
                overlay_dir=output_dir() / "overlays" if overlays else None,
                dialogue_baseline=getattr(settings.task, "dialogue_baseline", False),
            )
            trainer.predict(evaluator, datamodule=datamodule, return_predictions=False)
            # every rank's part file is complete before rank 0 merges them (DDP)
            trainer.strategy.barrier("vzexp-predictions-written")
        if trainer.global_rank != 0:
            return {}
        records = store.merge(ids)
        metrics = summarize(records, settings.model.device, scorer)
        if copy_to is not None:  # this run's samples, beside its config
            PredictionStore.write(copy_to, records)
        tracker.log_artifact(copy_to or predictions)
        for picture in sorted((output_dir() / "overlays").glob("*.png")):
            tracker.log_artifact(picture, artifact_path="overlays")
        print(results_table(metrics, settings), flush=True)
        return metrics

    return predict


def evaluate(settings: VzexpConfig, compressor, out: Path, tracker) -> dict[str, float]:
    import lightning as L
    from hydra.utils import instantiate

    from vzexp.models.install import install

    L.seed_everything(settings.seed, verbose=False)
    dataset = instantiate(settings.data.dataset)
    words = dataset.vocabulary() if hasattr(dataset, "vocabulary") else []
    model, processor = load_model(settings, words, projector_download(settings))
    installed = install(model, compressor, layout=settings.model.layout)
    log.info("visual tokens per image: %d", installed.tokens_per_image)
    predict = predictor(settings, tracker)
    metrics = predict(
        installed,
        processor,
        dataset,
        predictions_path(settings),
        out / settings.task.predictions_file,
    )
    tracker.log_metrics(metrics)
    return metrics


def score_file(settings: VzexpConfig, tracker, out: Path) -> dict[str, float]:
    """task=score: the data config's scorer over an existing predictions file, no model."""
    from vzexp.data.scoring import scorer_for
    from vzexp.engine.evaluate import summarize
    from vzexp.engine.predictions import read_records
    from vzexp.errors import MissingPathError

    path = Path(settings.task.predictions)
    if not path.is_file():
        raise MissingPathError(f"task.predictions={str(path)!r}: no such file")
    records = read_records(path)
    if not records:
        raise MissingPathError(f"task.predictions={str(path)!r}: no prediction records in it")
    scorer = scorer_for(settings.data.scorer)
    for record in records:
        record["correct"] = scorer.sample(record)
    metrics = summarize(records, "cpu", scorer)
    rescored = out / "predictions.rescored.jsonl"
    rescored.write_text("".join(json.dumps(r) + "\n" for r in records))
    tracker.log_artifact(rescored)
    tracker.log_metrics(metrics)
    print(results_table(metrics, settings), flush=True)
    return metrics
