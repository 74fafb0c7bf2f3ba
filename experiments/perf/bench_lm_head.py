"""The LLM prefill of the frozen small_real (every model after task=tune is frozen) with and
without `vzexp.models.build.fold_lm_head_input`, side by side in one run; writes lm_head.md here.

    python experiments/perf/bench_lm_head.py [--batches 4] [--rounds 3]

generate() hands the LM head the last position's hidden state, a (B, 1, d) slice of (B, S, d).
With the head frozen (requires_grad False) torch's matmul does not fold that slice into one
matrix product and multiplies B expanded copies of the 49k x 576 head weight instead. The arms:
`fresh` (as from_pretrained leaves it: requires_grad True, no hook), `frozen` (requires_grad
False, no hook: every evaluation after task=tune before the fix) and `frozen+fold` (the fix).
Each arm times the LLM prefill of generate() (vzexp's `llm_prefill_ms_per_sample`: from the
streamer's first call to the first new token) on the first easy-vqa test batches (batch 16,
bfloat16, all 64 visual tokens), one warm-up batch per arm, arms alternating per round;
medians."""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

HERE = Path(__file__).resolve().parent


def settings():
    from vzexp.config import register_configs, validate
    from vzexp.paths import config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(
            "config", overrides=["model=small_real", "data=easy_vqa", "model.dtype=bfloat16"]
        )
    return validate(cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from hydra.utils import instantiate
    from torch.utils.data import Subset

    from vzexp.compress import NoCompression
    from vzexp.engine.evaluate import EvalDataModule, PhaseTimer
    from vzexp.models.install import install
    from vzexp.models.load import load_model

    torch.set_num_threads(2)
    s = settings()
    dataset = instantiate(s.data.dataset)
    model, processor = load_model(s, [])
    install(model, NoCompression())
    batch_size = s.data.batch_size
    subset = Subset(dataset, range(batch_size * (args.batches + 1)))
    loader = EvalDataModule(subset, processor, batch_size).predict_dataloader()
    batches = [b["inputs"] for b in loader]
    fold_hooks = dict(model.lm_head._forward_pre_hooks)  # what fold_lm_head_input installed
    assert fold_hooks, "fold_lm_head_input did not install its hook"

    def arm(name: str) -> None:
        model.lm_head._forward_pre_hooks.clear()
        if name == "frozen+fold":
            model.lm_head._forward_pre_hooks.update(fold_hooks)
        model.requires_grad_(name == "fresh")

    def prefill_ms(inputs) -> float:
        timer = PhaseTimer()
        with torch.inference_mode():
            model.generate(
                **inputs,
                max_new_tokens=1,
                do_sample=False,
                streamer=timer,
                pad_token_id=processor.tokenizer.pad_token_id,
            )
        return 1000 * timer.prefill / inputs["input_ids"].shape[0]

    arms = ["fresh", "frozen", "frozen+fold"]
    times: dict[str, list[float]] = {a: [] for a in arms}
    for a in arms:  # warm-up
        arm(a)
        prefill_ms(batches[0])
    start = time.perf_counter()
    for r in range(args.rounds):
        for a in arms[r % 3 :] + arms[: r % 3]:
            arm(a)
            times[a] += [prefill_ms(b) for b in batches[1:]]
    seconds = time.perf_counter() - start
    med = {a: statistics.median(t) for a, t in times.items()}
    rows = [
        f"| {a} | {med[a]:.1f} | {min(times[a]):.1f} | {max(times[a]):.1f} | {med[a] / med['frozen+fold']:.2f}x |"
        for a in arms
    ]
    text = "\n".join(
        [
            "# LLM prefill of the frozen small_real with and without fold_lm_head_input",
            "",
            "Command: `python experiments/perf/bench_lm_head.py "
            f"--batches {args.batches} --rounds {args.rounds}` ({seconds:.0f} s of timed calls)",
            f"Machine: {platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}.",
            f"{args.batches} batches x {args.rounds} rounds of {batch_size} easy-vqa test questions "
            "per arm, bfloat16, 64 visual tokens; ms per sample.",
            "",
            "| arm | median | min | max | / frozen+fold |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    (HERE / "lm_head.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
