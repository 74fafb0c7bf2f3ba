"""Step time of the tiny recipe's instruct stage on the shipped model, side by side in one run:
an all-token batch (196 visual tokens) against a budget batch (VisionZip at 24 tokens), both
16 scenes x 10 isolated turns, forward + backward + AdamW step, after 2 warm-up steps.

    python experiments/tiny_default/budget_step_time.py

Measured (2 cores, 2026-12-02): all-token 0.292 s, budget 0.123 s per step (ratio 0.42); an
earlier run of the same steps, 0.326 vs 0.142 s (0.44), sized +experiment=build_tiny_budget's
3,100 instruct steps (README.md)."""

from __future__ import annotations

import time

import torch

from vzexp.data.shapes import ShapesScenes
from vzexp.models.build import load_checkpoint
from vzexp.paths import resource_dir
from vzexp.recipes.tiny_shapes.data import Collate, Conversations, RenderedScenes
from vzexp.recipes.tiny_shapes.objectives import LlavaStage, budget_compressors

BATCH, STEPS, WARMUP = 16, 8, 2


def main() -> None:
    model, processor = load_checkpoint(str(resource_dir() / "tiny_shapes"))
    source = ShapesScenes(split="train", size=64, image_size=112, seed=0, max_objects=4)
    scenes = RenderedScenes.build(source)
    compressors = budget_compressors(model, [24])
    (kept,) = compressors
    data = Conversations(scenes, processor, 196, "qa", 10, 0, True, budgets=(kept,))
    image = processor.image_processor
    collate = Collate(processor.tokenizer.pad_token_id, image.image_mean, image.image_std)
    module = LlavaStage(model, "instruct", ("projector", "llm"), compressors)
    module.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    seconds: dict[str, list[float]] = {"all tokens": [], f"budget ({kept} tokens)": []}
    for step in range(STEPS):
        scenes_now = [i % len(data) for i in range(step * BATCH, (step + 1) * BATCH)]
        for name in seconds:
            keys = scenes_now if name == "all tokens" else [(i, kept) for i in scenes_now]
            batch = collate([data[k] for k in keys])
            start = time.perf_counter()
            module(batch)[0].backward()
            optimizer.step()
            optimizer.zero_grad()
            seconds[name].append(time.perf_counter() - start)
    means = {name: sum(v[WARMUP:]) / len(v[WARMUP:]) for name, v in seconds.items()}
    for name, mean in means.items():
        print(f"{name}: {mean:.3f} s per step of {BATCH}")
    full, budget = means.values()
    print(f"ratio budget / all tokens: {budget / full:.2f}")


if __name__ == "__main__":
    main()
