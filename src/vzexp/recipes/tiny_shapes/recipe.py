"""The recipe that builds `model=tiny_shapes`, the shipped default: `python -m vzexp +experiment=build_tiny`.

A LlavaForConditionalGeneration (small CLIP tower with CLS + small Llama + 2-layer MLP projector)
with a word-level tokenizer, trained in LLaVA's stages on the synthetic shapes train split, saved
with save_pretrained, evaluated with all visual tokens on the test split, and described by a model
card written from the measured figures."""

from __future__ import annotations

import json
import logging
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from vzexp.compress.none import NoCompression
from vzexp.config import as_plain
from vzexp.data.shapes import COLORS, SHAPES, ShapesQA, ShapesScenes
from vzexp.engine.trainer import make_trainer, seed_everything
from vzexp.engine.training import EpochSetter, StepModule
from vzexp.models.build import assemble
from vzexp.models.install import install
from vzexp.paths import resource_dir
from vzexp.recipes.tiny_shapes.budget_batches import BudgetBatches
from vzexp.recipes.tiny_shapes.data import (
    CAPTION_PROMPT,
    Collate,
    Conversations,
    RenderedScenes,
    TowerTargets,
)
from vzexp.recipes.tiny_shapes.mimetic_init import mimetic_init_clip_tower
from vzexp.recipes.tiny_shapes.objectives import (
    LlavaStage,
    TowerPretrainer,
    budget_compressors,
)

log = logging.getLogger("vzexp")
CARD = "README.md"


def build_tiny(settings, tracker, out: Path, predict) -> dict[str, float]:
    """The recipe's entry point (`task=build_tiny`): train, save, evaluate with all tokens, write
    the card, and return the evaluation's metrics. `settings.task` is a `BuildTinyTaskConfig`;
    the stages' metrics go to `tracker`'s run; `predict(installed, processor, dataset, path)` is the
    task layer's evaluation. `task.install` copies the result into the package (the shipped
    `model=tiny_shapes`)."""
    task = settings.task
    seed_everything(settings.seed)
    image_size = settings.encoder.config["image_size"]
    start = time.perf_counter()
    source = ShapesScenes(
        split="train",
        size=task.train_scenes,
        image_size=image_size,
        seed=settings.seed,
        max_objects=task.max_objects,
    )
    scenes = RenderedScenes.build(source)
    seconds = {"render": time.perf_counter() - start}
    log.info("rendered %d training scenes in %.0f s", len(scenes), seconds["render"])

    words = [*source.vocabulary(), *CAPTION_PROMPT.replace(".", " . ").split()]
    model, processor = assemble(
        as_plain(settings.encoder), as_plain(settings.llm), words, seed=settings.seed
    )
    seconds.update(train_stages(settings, model, processor, scenes, tracker))
    model.eval()

    target = out / task.output
    model.save_pretrained(target)
    processor.save_pretrained(target)

    installed = install(model, NoCompression())
    test = ShapesQA(split="test", size=task.eval_size, image_size=image_size, seed=0)
    metrics = predict(installed, processor, test, out / "predictions.jsonl")
    metrics["train_minutes"] = sum(seconds.values()) / 60
    (target / CARD).write_text(model_card(settings, metrics, seconds, model))
    (target / "training.json").write_text(
        json.dumps({"seconds": seconds, "metrics": metrics}, indent=2)
    )
    tracker.log_metrics(metrics)
    tracker.log_artifact(target / CARD)
    if task.install:
        installed = install_into_package(target)
        log.info("installed as model=tiny_shapes: %s", installed)
    log.info("tiny model written to %s", target)
    return metrics


def train_stages(settings, model, processor, scenes, tracker=None) -> dict[str, float]:
    """Runs the four stages in order; returns seconds per stage. With a tracker that logs, each
    stage's metrics (`tower/loss`, `instruct/loss`, ...) go into its run."""
    task = settings.task
    image = processor.image_processor
    collate = Collate(processor.tokenizer.pad_token_id, image.image_mean, image.image_std)
    grid = model.config.vision_config.image_size // model.config.vision_config.patch_size
    identities = [(c, s) for c in COLORS for s in SHAPES]
    seconds: dict[str, float] = {}

    def fit(name, objective, dataset, stage, callbacks=(), budget_fraction=0.0):
        if stage.steps <= 0:
            log.info("stage %s: skipped (steps=0)", name)
            return
        start = time.perf_counter()
        trainer = make_trainer(
            settings.trainer,
            tracker,
            max_steps=stage.steps,
            max_epochs=-1,
            gradient_clip_val=stage.grad_clip,
            log_every_n_steps=min(10, stage.steps),
            callbacks=list(callbacks),
        )
        module = StepModule(objective, **_schedule(stage))
        module.train()  # assemble() hands the model over in eval mode
        budgets = list(objective.compressors) if budget_fraction else []
        loader = _loader(
            dataset, stage.batch_size, collate, settings.seed, budget_fraction, budgets
        )
        trainer.fit(module, train_dataloaders=loader)
        seconds[name] = time.perf_counter() - start
        log.info("stage %s: %d steps in %.0f s", name, stage.steps, seconds[name])

    stages = task.stages
    tower = model.model.vision_tower
    if task.mimetic_init:
        mimetic_init_clip_tower(tower, settings.seed)
    fit(
        "tower",
        TowerPretrainer(
            tower,
            len(identities),
            task.max_objects,
            len(COLORS),
            len(SHAPES),
            model.config.vision_feature_layer,
            task.patch_weight,
        ),
        TowerTargets(scenes, identities, task.max_objects, grid),
        stages.tower,
    )
    for name, mode, trainable in (
        ("language", "text" if task.scene_as == "caption" else "objects", ("llm",)),
        # the projector learns to answer through the LLM trained on words, so the visual tokens
        # come to play the caption's part (probe in experiments/build_tiny/)
        ("align", "qa", ("projector",)),
        ("instruct", "qa", ("projector", "llm")),
    ):
        stage = getattr(stages, name)
        # the instruct stage may also train on images compressed to a budget (VisionZip's
        # fine-tuning step, task.budget_fraction)
        fraction = task.budget_fraction if name == "instruct" else 0.0
        compressors = budget_compressors(model, task.budget_tokens) if fraction else {}
        data = Conversations(
            scenes,
            processor,
            grid * grid,
            mode,
            stage.turns,
            settings.seed,
            task.isolate_turns,
            budgets=tuple(compressors),
        )
        objective = LlavaStage(model, name, trainable, compressors)
        fit(name, objective, data, stage, callbacks=[EpochSetter(data)], budget_fraction=fraction)
    model.requires_grad_(False)
    return seconds


def _loader(dataset, batch_size: int, collate, seed: int, budget_fraction=0.0, budgets=()):
    from torch.utils.data import DataLoader

    if budget_fraction > 0:
        batches = BudgetBatches(len(dataset), batch_size, budget_fraction, budgets, seed)
        return DataLoader(dataset, batch_sampler=batches, collate_fn=collate)
    generator = torch.Generator().manual_seed(seed)  # same order on every rebuild
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=True, collate_fn=collate, generator=generator
    )


def _schedule(stage) -> dict[str, Any]:
    return dict(
        lr=stage.lr,
        weight_decay=stage.weight_decay,
        warmup_steps=stage.warmup_steps,
        total_steps=stage.steps,
    )


def recipe_command(settings) -> str:
    """The command that rebuilt this model: the run's overrides, minus where it logged/wrote."""
    from hydra.core.hydra_config import HydraConfig

    overrides = ["+experiment=build_tiny", f"seed={settings.seed}"]
    if HydraConfig.initialized():
        overrides += [
            o
            for o in HydraConfig.get().overrides.task
            if not o.startswith(("hydra.", "logger.", "+experiment=", "seed=", "task.install="))
        ]
    return "python -m vzexp " + " ".join(overrides)


def model_card(settings, metrics: dict[str, float], seconds: dict[str, float], model) -> str:
    task = settings.task
    params = sum(p.numel() for p in model.parameters())
    vision, text = model.config.vision_config, model.config.text_config
    grid = vision.image_size // vision.patch_size
    per_type = sorted(k for k in metrics if k.startswith("accuracy/"))
    rows = "\n".join(f"| {k.split('/', 1)[1]} | {metrics[k]:.3f} |" for k in per_type)
    stage_rows = "\n".join(
        f"| {name} | {getattr(task.stages, name).steps} | {getattr(task.stages, name).batch_size} "
        f"| {secs / 60:.1f} |"
        for name, secs in seconds.items()
        if name != "render"
    )
    total = sum(seconds.values())
    return f"""# tiny_shapes: the tiny LLaVA shipped as vzexp's default model

A `LlavaForConditionalGeneration` ({params / 1e6:.2f} M parameters): a CLIP vision tower
({vision.num_hidden_layers} layers, width {vision.hidden_size}, {vision.image_size} px, {vision.patch_size}-px
patches: a {grid}x{grid} grid + CLS), a 2-layer MLP projector and a Llama
({text.num_hidden_layers} layers, width {text.hidden_size}) with a word-level tokenizer
({text.vocab_size} words). Trained by vzexp's recipe on the synthetic shapes train split
({task.train_scenes} scenes); it knows nothing outside that world.

## Recipe
```
{recipe_command(settings)}
```
Seed {settings.seed}. Stages (LLaVA's, see `vzexp.recipes.tiny_shapes`):

| stage | steps | batch | minutes |
|---|---|---|---|
| render the training scenes | | | {seconds.get("render", 0) / 60:.1f} |
{stage_rows}

Training time {total / 60:.1f} min on {platform.machine()} with {torch.get_num_threads()} torch threads
(Python {sys.version.split()[0]}, torch {torch.__version__}).

## Full-token accuracy on the shapes test split
{int(metrics.get("samples", 0))} questions (`data=shapes`, split test, seed 0), all {grid * grid} visual
tokens (`compressor=none`), greedy decoding, exact match after normalisation:

| question type | accuracy |
|---|---|
| **overall** | **{metrics["accuracy"]:.3f}** |
{rows}

Measured by the recipe run itself, right after training.
"""


def install_into_package(source: Path) -> Path:
    target = resource_dir() / source.name  # task.output: tiny_shapes, tiny_shapes_budget
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    return target
