"""task=tune: evaluate training-free (baseline/*), tune the projector with the compressor in the
loop, save it, and evaluate again with the tuned projector: one MLflow run.

    python -m vzexp +experiment=tune_projector            # tiny default, shapes train split
    python -m vzexp task=tune train_data=llava_instruct train_data.path=... train_data.image_root=...
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vzexp.config import VzexpConfig, as_plain
from vzexp.data.instruct import InstructDataset
from vzexp.engine.feature_cache import FeatureCache, check_cacheable, check_tunable
from vzexp.engine.predictions import config_key
from vzexp.engine.trainer import EpochTimer, make_trainer, seed_everything, stoppable
from vzexp.engine.tuning import AtomicCheckpointIO, EpochCheckpoint, ProjectorTuner, TuneDataModule
from vzexp.errors import ConfigError
from vzexp.models.build import torch_dtype
from vzexp.models.install import install, tokens_per_image
from vzexp.models.load import build_compressor, load_model
from vzexp.models.projector import ARTIFACT_PATH, publish, save_projector
from vzexp.paths import cache_dir
from vzexp.runtime import rank
from vzexp.tasks.base import Context
from vzexp.tasks.common import (
    evaluate_and_log,
    load_dataset,
    predictions_path,
    projector_download,
)
from vzexp.tasks.eval import EvalTask
from vzexp.tasks.stages import compose_stages

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


# the autocast precision that trains float32 parts of a model loaded in this dtype
MIXED_FOR_DTYPE = {"bfloat16": "bf16-mixed", "float16": "16-mixed"}


def check_tune_precision(dtype: str, precision: str) -> None:
    """A model loaded in half precision trains its tuned parts in float32 under autocast;
    without autocast their products would mix dtypes."""
    mixed = MIXED_FOR_DTYPE.get(str(dtype))
    if mixed and str(precision) != mixed:
        raise ConfigError(
            "trainer.precision",
            precision,
            f"{mixed} with model.dtype={dtype} (the frozen model in {dtype}, the trained parts "
            "in float32 under autocast), or model.dtype=float32",
        )


@dataclass
class TuneTask(EvalTask):
    """Projector tuning with the compressor in the loop, then evaluation."""

    name: str = "tune"
    epochs: int = 1
    batch_size: int = 16
    accumulate: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    grad_clip: float = 1.0
    cache: bool = True
    cache_dir: str | None = None
    checkpoint_dir: str = "checkpoints"
    baseline: bool = True
    overlays: int = 0
    # also train the LLM's last N decoder layers (0: the projector alone, VisionZip's recipe);
    # they are saved beside the projector and loaded with it
    llm_layers: int = 0
    llm_lr: float | None = None  # their learning rate (null: task.lr)
    # also copy the result into $VZEXP_CACHE/trained/<publish>/, where a model config finds it as
    # ${vzexp_trained:<publish>} (weights too large to ship are built once per machine, then reused)
    publish: str | None = None
    # cosine: warm-up then cosine decay to zero (LLaVA's); constant: warm-up then the full lr
    schedule: str = "cosine"
    # false: keep the loaded projector and train the LLM layers alone (a later stage)
    tune_projector: bool = True
    # with tune_projector false and epochs > 1: the frozen LLM layers' output kept in memory per
    # sample after the first epoch, so later epochs run the trained layers alone (the same
    # numbers, at the memory of one hidden state per training token)
    cache_trunk: bool = False
    # a recipe in stages (vzexp.tasks.stages): each a list of overrides added to the command
    # line, run in order, each from the weights the one before left; empty: this config alone
    stages: list[Any] = field(default_factory=list)

    def __post_init__(self):
        super().__post_init__()
        if self.llm_layers < 0:
            raise ConfigError("task.llm_layers", self.llm_layers, "an integer >= 0")
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError("task.schedule", self.schedule, "cosine or constant")
        if not self.tune_projector and self.llm_layers == 0:
            raise ConfigError(
                "task.tune_projector",
                self.tune_projector,
                "true, or task.llm_layers >= 1 (with the projector frozen nothing would train)",
            )
        if self.llm_lr is not None and self.llm_lr <= 0:
            raise ConfigError("task.llm_lr", self.llm_lr, "a learning rate > 0, or null")
        for k, stage in enumerate(self.stages):
            if not (isinstance(stage, list) and all(isinstance(o, str) for o in stage)):
                raise ConfigError(
                    f"task.stages[{k}]",
                    stage,
                    "a list of overrides (e.g. [tokens=16, task.lr=3e-3])",
                )
        if self.publish is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", self.publish):
            raise ConfigError("task.publish", self.publish, "a plain name (letters, digits, _ . -)")
        for key in ("epochs", "batch_size", "accumulate"):
            if getattr(self, key) < 1:
                raise ConfigError(f"task.{key}", getattr(self, key), "an integer >= 1")
        if self.lr <= 0:
            raise ConfigError("task.lr", self.lr, "a learning rate > 0")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError("task.warmup_ratio", self.warmup_ratio, "a fraction in [0, 1)")
        if self.grad_clip < 0:
            raise ConfigError("task.grad_clip", self.grad_clip, "a max gradient norm >= 0")

    def check(self, settings) -> None:
        check_tune_precision(settings.model.dtype, settings.trainer.precision)

    def prepare(self, settings) -> None:
        super().prepare(settings)
        # every stage of a staged recipe composed and checked before anything runs
        self.stage_settings = compose_stages(settings)
        for stage in self.stage_settings:
            check_trainable(stage)

    def run(self, settings, context: Context) -> dict[str, float]:
        return tune_and_evaluate(
            settings, self.compressor, context.out, context.tracker, self.stage_settings
        )


def run_key(settings: VzexpConfig, after: list[str] | None = None) -> str:
    """Names this tuning's checkpoints: everything that decides the trained projector (and, for
    a later stage of task.stages, the keys of the stages it continues from)."""
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
    """`stages`: the settings of each stage of task.stages (`compose_stages`); by default the
    run's own settings are the one stage."""
    stages = stages or [settings]
    task = settings.task
    seed_everything(settings.seed)
    eval_set = getattr(task, "dataset", None)  # loaded by prepare() before the run opened
    eval_set = load_dataset(settings) if eval_set is None else eval_set
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
    metrics: dict[str, float] = {}
    if task.baseline:  # the training-free number, same config and data
        installed = install(model, compressor)
        baseline = evaluate_and_log(
            settings,
            installed,
            processor,
            eval_set,
            predictions_path(settings, dataset=eval_set),
            tracker,
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
    tuned_predictions = predictions_path(settings, {"tuned": keys[-1]}, eval_set)
    metrics.update(
        evaluate_and_log(
            settings,
            installed,
            processor,
            eval_set,
            tuned_predictions,
            tracker,
            out / task.predictions_file,
        )
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
    task = settings.task
    records, image_root = settings.train_data.records(cache_dir())
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
    timer = EpochTimer()
    trainer = make_trainer(
        settings.trainer,
        tracker=tracker,
        metric_prefix=prefix.rstrip("/"),
        max_epochs=task.epochs,
        accumulate_grad_batches=task.accumulate,
        gradient_clip_val=task.grad_clip,
        use_distributed_sampler=False,  # TuneDataModule shards itself, the same way for 1 or N
        log_every_n_steps=1,
        callbacks=[EpochCheckpoint(last), timer],
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(out),
    )
    # SIGTERM/SIGINT: the fit stops at the end of the current batch, the run ends KILLED, and a
    # rerun resumes from the last epoch's checkpoint, redoing the epoch that was cut short
    stoppable(lambda: trainer.fit(tuner, datamodule=data, ckpt_path=resume_from))
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
