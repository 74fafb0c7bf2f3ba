"""task=tune: evaluate training-free (baseline/*), tune the projector with the compressor in the
loop, save it, and evaluate again with the tuned projector: one MLflow run.

    python -m vzexp +experiment=tune_projector            # tiny default, shapes train split
    python -m vzexp task=tune train_data=llava_instruct train_data.path=... train_data.image_root=...
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import lightning as L

from vzexp.config import VzexpConfig, as_plain
from vzexp.errors import ConfigError

log = logging.getLogger("vzexp")
# the task fields that decide the tuned projector (the rest only say what is evaluated or where)
TRAINING_FIELDS = (
    "epochs",
    "batch_size",
    "accumulate",
    "lr",
    "weight_decay",
    "warmup_ratio",
    "grad_clip",
    "llm_layers",
    "llm_lr",
    "schedule",
    "tune_projector",
)


def training_records(settings: VzexpConfig):
    """(records, image root) of the training data: the user's LLaVA JSON, or the shapes or
    easy-vqa train split exported into the cache."""
    from vzexp.data.instruct import read_instruct

    data = settings.train_data
    if data.path is None and data.name == "easy_vqa":
        from vzexp.data.easy_vqa import ANSWER_TYPES, INSTRUCT_FILE, export_instruct
        from vzexp.paths import cache_dir

        # isolated turns cannot leak into each other: the present-attribute questions lead
        present_first = data.balance_yes_no and data.isolate_turns
        order = "-balanced" if data.balance_yes_no else ""
        order += "-present-first" if present_first else ""
        order += "-twins" if data.present_twins else ""
        types = (
            tuple(t for t in ANSWER_TYPES if t in data.answer_types) if data.answer_types else None
        )
        order += "-" + "-".join(t.replace("/", "") for t in types) if types else ""
        root = cache_dir() / "train_data" / f"easy_vqa-train-seed{data.seed}{order}"
        image_root = export_instruct(
            root,
            "train",
            seed=data.seed,
            balanced=data.balance_yes_no,
            present_first=present_first,
            twins=data.present_twins,
            answer_types=types,
        )
        path = root / INSTRUCT_FILE
    elif data.path is None:
        from vzexp.data.shapes_instruct import INSTRUCT_FILE, shapes_instruct_dir
        from vzexp.paths import cache_dir

        root = shapes_instruct_dir(cache_dir(), data.scenes, data.seed, data.image_size)
        path, image_root = root / INSTRUCT_FILE, root / "images"
    else:
        path = Path(data.path)
        image_root = Path(data.image_root) if data.image_root else path.parent
    records = read_instruct(path, "train_data.path", data.fraction, data.limit, data.seed)
    if data.max_turns is not None:
        from dataclasses import replace

        records = [replace(r, turns=r.turns[: data.max_turns]) for r in records]
    return records, image_root


def run_key(settings: VzexpConfig, after: list[str] | None = None) -> str:
    """Names this tuning's checkpoints: everything that decides the trained projector (and, for
    a later stage of task.stages, the keys of the stages it continues from)."""
    from vzexp.engine.predictions import config_key

    node = {
        "model": as_plain(settings.model),
        "encoder": as_plain(settings.encoder),
        "llm": as_plain(settings.llm),
        "compressor": settings.compressor,
        "tokens": settings.tokens,
        "seed": settings.seed,
        "train_data": as_plain(settings.train_data),
        "tune": {k: v for k, v in as_plain(settings.task).items() if k in TRAINING_FIELDS},
        "trainer": {"precision": settings.trainer.precision},
    }
    if after:
        node["after"] = list(after)
    return config_key(node)


def check_trainable(settings: VzexpConfig) -> None:
    """What task=tune refuses before any model is loaded."""
    if settings.train_data is None:
        raise ConfigError(
            "train_data",
            None,
            "training data for task=tune: train_data=shapes (the default model's) or "
            "train_data=llava_instruct train_data.path=JSON train_data.image_root=DIR",
        )
    if "fsdp" in str(settings.trainer.strategy):
        raise ConfigError(
            "trainer.strategy",
            settings.trainer.strategy,
            "ddp or auto for task=tune (the frozen model is kept outside the wrapped module, so "
            "FSDP would not shard it)",
        )


def tune_and_evaluate(
    settings: VzexpConfig, compressor, out: Path, tracker, stages: list[VzexpConfig] | None = None
) -> dict[str, float]:
    """`stages`: the settings of each stage of task.stages (vzexp.stages.compose_stages); by
    default the run's own settings are the one stage."""
    from hydra.utils import instantiate

    from vzexp.engine.feature_cache import check_cacheable, check_tunable
    from vzexp.models.build import torch_dtype
    from vzexp.models.install import install, tokens_per_image
    from vzexp.models.load import build_compressor, load_model
    from vzexp.models.projector import ARTIFACT_PATH, publish, save_projector
    from vzexp.run import predictions_path, predictor, projector_download, rank

    stages = stages or [settings]
    for stage in stages:
        check_trainable(stage)
    task = settings.task
    L.seed_everything(settings.seed, verbose=False)
    eval_set = instantiate(settings.data.dataset)
    words = eval_set.vocabulary() if hasattr(eval_set, "vocabulary") else []
    model, processor = load_model(settings, words, projector_download(settings))
    if model.config.model_type != "llava":
        raise ConfigError(
            "model",
            settings.model.name,
            f"a LLaVA-1.5 model for task=tune (projector tuning of a {model.config.model_type} "
            "model is not supported yet; evaluate it with task=eval)",
        )
    compressors = [compressor if s is settings else build_compressor(s) for s in stages]
    for stage, stage_compressor in zip(stages, compressors):
        check_tunable(stage_compressor)
        if stage.task.cache:
            check_cacheable(stage_compressor)
    predict = predictor(settings, tracker)
    metrics: dict[str, float] = {}
    if task.baseline:  # the training-free number, same config and data
        installed = install(model, compressor)
        baseline = predict(
            installed,
            processor,
            eval_set,
            predictions_path(settings),
            out / "predictions.baseline.jsonl",
        )
        metrics.update({f"baseline/{k}": v for k, v in baseline.items()})
        installed.remove()

    keys: list[str] = []
    llm_layers = max(stage.task.llm_layers for stage in stages)
    staged = len(stages) > 1
    for k, (stage, stage_compressor) in enumerate(zip(stages, compressors), 1):
        keys.append(run_key(stage, after=keys))
        if staged and rank() == 0:
            log.info("stage %d of %d: %s", k, len(stages), " ".join(task.stages[k - 1]) or "-")
        prefix = f"stage{k}/" if staged else ""
        stage_metrics = train_stage(
            stage, model, processor, stage_compressor, keys[-1], out, tracker, prefix
        )
        metrics.update(stage_metrics)
        if staged and k < len(stages) and rank() == 0:  # each stage's weights kept in the run
            save_projector(
                model,
                out / "stages" / str(k) / ARTIFACT_PATH,
                {"stage": k, "overrides": list(task.stages[k - 1])},
                llm_layers=llm_layers,
            )
    if rank() == 0:
        last = stages[-1]
        directory = save_projector(
            model,
            out / ARTIFACT_PATH,
            {
                "model": settings.model.name,
                "compressor": dict(last.compressor),
                "tokens": last.tokens,
                "seed": last.seed,
                "train_records": int(metrics[f"{prefix}tune/train_records"]),
                "epochs": last.task.epochs,
                **({"stages": [list(s) for s in task.stages]} if staged else {}),
            },
            llm_layers=llm_layers,
        )
        for name in sorted(p.name for p in directory.iterdir()):
            tracker.log_artifact(directory / name, artifact_path=ARTIFACT_PATH)
        if task.publish:
            log.info("tuned weights published to %s", publish(directory, task.publish))
    # trained in float32 (under autocast when the model is in half precision); evaluated in the
    # model's own dtype
    model.to(torch_dtype(str(settings.model.dtype)))

    installed = install(model, compressor)
    tuned_predictions = predictions_path(settings, extra={"tuned": keys[-1]})
    metrics.update(
        predict(installed, processor, eval_set, tuned_predictions, out / task.predictions_file)
    )
    if "baseline/accuracy" in metrics and "accuracy" in metrics:
        metrics["tune/accuracy_gain"] = metrics["accuracy"] - metrics["baseline/accuracy"]
        print(
            f"{settings.compressor.get('name')} at {tokens_per_image(model, compressor)} tokens: "
            f"training-free {metrics['baseline/accuracy']:.4f} -> tuned projector "
            f"{metrics['accuracy']:.4f} ({metrics['tune/accuracy_gain']:+.4f})",
            flush=True,
        )
    tracker.log_metrics(metrics)
    return metrics


def train_stage(
    settings: VzexpConfig, model, processor, compressor, key: str, out: Path, tracker, prefix: str
) -> dict[str, float]:
    """One stage of tuning on the model in memory (its trained parts left as trained); returns
    the stage's metrics, named `<prefix>tune/...`."""
    from vzexp.data.instruct import InstructDataset
    from vzexp.engine.feature_cache import FeatureCache
    from vzexp.engine.tuning import (
        AtomicCheckpointIO,
        EpochCheckpoint,
        ProjectorTuner,
        TuneDataModule,
    )
    from vzexp.models.install import tokens_per_image
    from vzexp.models.tiny_recipe import _attached_logger
    from vzexp.paths import cache_dir
    from vzexp.run import rank, trainer_settings

    task = settings.task
    records, image_root = training_records(settings)
    tokens = tokens_per_image(model, compressor)
    dataset = InstructDataset(
        records,
        image_root,
        processor,
        tokens,
        with_pixels=not task.cache,
        isolate_turns=settings.train_data.isolate_turns,
    )
    features, cache_seconds = None, 0.0
    if task.cache:
        start = time.perf_counter()
        root = Path(task.cache_dir) if task.cache_dir else cache_dir() / "features"
        cache = FeatureCache(root, model, dict(settings.compressor), dataset)
        features = cache.load_or_build(model, compressor, dataset, task.batch_size)
        cache_seconds = time.perf_counter() - start

    world = settings.trainer.devices * settings.trainer.num_nodes
    batches = math.ceil(len(dataset) / (world * task.batch_size))
    total_steps = task.epochs * math.ceil(batches / task.accumulate)
    tuner = ProjectorTuner(
        model,
        compressor,
        llm_layers=task.llm_layers,
        llm_lr=task.llm_lr,
        tune_projector=task.tune_projector,
        cache_trunk=task.cache_trunk and task.epochs > 1,  # the first epoch only fills it
        schedule=task.schedule,
        lr=task.lr,
        weight_decay=task.weight_decay,
        warmup_steps=math.ceil(task.warmup_ratio * total_steps),
        total_steps=total_steps,
    )
    pad_id = processor.tokenizer.pad_token_id or 0
    data = TuneDataModule(dataset, task.batch_size, pad_id, settings.seed, features)
    checkpoints = Path(task.checkpoint_dir) / key
    last = checkpoints / "last.ckpt"
    resume_from = str(last) if task.resume and last.is_file() else None
    if resume_from and rank() == 0:
        log.info("resuming the tuning from %s", last)
    # a stage's own metric names (stage2-tune/loss): each stage's steps start at 0
    logger = _attached_logger(tracker, settings, prefix=prefix.rstrip("/"))
    timer = EpochTimer()
    trainer = L.Trainer(
        **trainer_settings(settings),
        max_epochs=task.epochs,
        accumulate_grad_batches=task.accumulate,
        gradient_clip_val=task.grad_clip,
        use_distributed_sampler=False,  # TuneDataModule shards itself, the same way for 1 or N
        logger=logger or False,
        log_every_n_steps=1,
        callbacks=[EpochCheckpoint(last), timer],
        enable_checkpointing=False,  # EpochCheckpoint writes last.ckpt itself
        plugins=[AtomicCheckpointIO()],
        enable_model_summary=False,
        default_root_dir=str(out),
    )
    trainer.fit(tuner, datamodule=data, ckpt_path=resume_from)
    metrics = {
        "tune/train_records": float(len(dataset)),
        "tune/steps": float(trainer.global_step),
        "tune/cache_seconds": cache_seconds,
    }
    if timer.seconds:
        metrics["tune/epoch_seconds"] = sum(timer.seconds) / len(timer.seconds)
    if "tune/loss" in trainer.callback_metrics:
        metrics["tune/final_loss"] = float(trainer.callback_metrics["tune/loss"])
    return {f"{prefix}{name}": value for name, value in metrics.items()}


class EpochTimer(L.Callback):
    """Wall time of each training epoch (what the feature cache saves)."""

    def __init__(self):
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self._start)
        if trainer.global_rank == 0:  # per epoch: what the trunk cache saves after the first
            epoch, of = trainer.current_epoch + 1, trainer.max_epochs
            log.info("training epoch %d of %d: %.1f s", epoch, of, self.seconds[-1])
