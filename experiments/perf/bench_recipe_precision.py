"""Step time of build_small_real's two stages with the frozen model in float32 and in bfloat16
(trained parts float32 under autocast), side by side in one run; writes precision.md here.

    python experiments/perf/bench_recipe_precision.py [--steps 8]

Each stage's own config (+experiment=build_small_real and its first stage's overrides) builds the
model and the first training samples; each row times `--steps` optimiser steps of the tuner
(`ProjectorTuner.token_losses`, backward, AdamW) after one warm-up step, on the same batches for
both precisions. Stage 2's cached row replays the frozen layers' output (task.cache_trunk)."""

from __future__ import annotations

import argparse
import platform
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

HERE = Path(__file__).resolve().parent
BATCH = 4


def stage_settings(stage: int, dtype: str):
    from vzexp.config import register_configs, validate
    from vzexp.paths import config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        recipe = compose("config", overrides=["+experiment=build_small_real"])
        extra = list(recipe.task.stages[stage - 1])
        precision = "bf16-mixed" if dtype == "bfloat16" else "32-true"
        overrides = [
            "+experiment=build_small_real",
            *extra,
            "task.stages=[]",
            f"model.dtype={dtype}",
            f"trainer.precision={precision}",
            "model.projector=${vzexp_resource:small_real}",
        ]
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return validate(cfg), extra


def time_steps(stage: int, dtype: str, steps: int) -> dict[str, float]:
    from vzexp.data.instruct import InstructDataset, collate
    from vzexp.engine.tuning import ProjectorTuner
    from vzexp.models.install import tokens_per_image
    from vzexp.models.load import build_compressor, load_model
    from vzexp.paths import cache_dir

    torch.manual_seed(0)
    settings, _ = stage_settings(stage, dtype)
    model, processor = load_model(settings, [])
    compressor = build_compressor(settings)
    records, root = settings.train_data.records(cache_dir())
    tokens = tokens_per_image(model, compressor)
    data = InstructDataset(
        records[: BATCH * (steps + 1)],
        root,
        processor,
        tokens,
        isolate_turns=settings.train_data.isolate_turns,
    )
    task = settings.task
    tuner = ProjectorTuner(
        model,
        compressor,
        llm_layers=task.llm_layers,
        llm_lr=task.llm_lr,
        tune_projector=task.tune_projector,
        cache_trunk=not task.tune_projector,
        schedule="constant",
        lr=task.lr,
        weight_decay=0.0,
        warmup_steps=1,
        total_steps=10 * steps,
    )
    optimiser = torch.optim.AdamW([p for p in tuner.parameters() if p.requires_grad], lr=1e-5)
    pad = processor.tokenizer.pad_token_id or 0
    batches = [
        collate([data[i] for i in range(b * BATCH, (b + 1) * BATCH)], pad) for b in range(steps + 1)
    ]
    for batch in batches:  # the visual tokens as the feature cache gives them
        batch["features"] = tuner.visual_tokens(batch)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bfloat16" else nullcontext()

    def step(batch):
        with autocast:
            loss_sum, count = tuner.token_losses(batch)
        (loss_sum / count).backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)

    def timed() -> float:
        step(batches[0])  # warm-up
        start = time.perf_counter()
        for batch in batches[1:]:
            step(batch)
        return (time.perf_counter() - start) / steps

    out = {"step_s": timed()}
    if tuner.trunk is not None:  # every batch is recorded now: later epochs replay it
        out["cached_step_s"] = timed()
    out["tokens_per_batch"] = sum(int(b["attention_mask"].sum()) for b in batches[1:]) / steps
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    rows = []
    for stage, name in (
        (1, "stage 1: projector + 4 layers, 16 VisionZip tokens"),
        (2, "stage 2: 4 layers alone, 64 tokens, isolated turns"),
    ):
        times = {dtype: time_steps(stage, dtype, args.steps) for dtype in ("float32", "bfloat16")}
        for what, key in (("step", "step_s"), ("step replaying the trunk", "cached_step_s")):
            if key in times["float32"]:
                fp32, bf16 = times["float32"][key], times["bfloat16"][key]
                rows.append((name, what, fp32, bf16, times["bfloat16"]["tokens_per_batch"]))
    _, stage1 = stage_settings(1, "float32")
    lines = [
        "# small_real: a training step in float32 and in bfloat16",
        "",
        f"Command: `python experiments/perf/bench_recipe_precision.py --steps {args.steps}` "
        f"({platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}). "
        f"Batch {BATCH} easy-vqa train images; the mean of {args.steps} steps after one warm-up, "
        "on the same batches for both; bfloat16 = the frozen model in bfloat16, the trained "
        "parts in float32 under autocast (`model.dtype=bfloat16 trainer.precision=bf16-mixed`).",
        "",
        "| stage | what | float32 s | bfloat16 s | float32 / bfloat16 | tokens per batch |",
        "|---|---|---|---|---|---|",
    ]
    for name, what, fp32, bf16, tokens in rows:
        lines.append(
            f"| {name} | {what} | {fp32:.3f} | {bf16:.3f} | {fp32 / bf16:.2f}x | {tokens:.0f} |"
        )
    lines += ["", f"Stage 1's overrides: `{' '.join(stage1)}`.", ""]
    (HERE / "recipe_precision.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
