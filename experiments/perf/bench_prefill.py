"""On-demand benchmark: LLM prefill time with VisionZip's visual tokens vs all of them, on the
same Llama-shaped LLM of >= 300M parameters, measured side by side in one process, against the
analytic FLOP ratio.

Cases (real transformers classes, random weights, fp32, batch 1, greedy, 1 new token):
  llava15  LlavaForConditionalGeneration: CLIP grid of 24x24 patches at 336 px (576 + CLS);
           compressor=none (LLaVA's default select: 576 tokens) vs visionzip 54 + 10 (64).
  next     LlavaNextForConditionalGeneration, a 672x672 image = base view + 2x2 crops of 576 patches:
           compressor=none (the model's own layout: 576 + 48 x 48 crops + 48 newlines = 2,928)
           vs visionzip 28 + 4 per view (5 x 32 = 160).
The tower is narrow (width 64, 2 layers): its cost is not part of the LLM prefill measured here.
Both arms run through vzexp's install + the model's own generate; the LLM prefill is the time from
generate's first streamer call (just before the prefill forward) to its second (the first new
token), as vzexp's evaluation measures it (`llm_prefill_ms_per_sample`).

FLOP model (forward, batch 1, T tokens, d = 1024, d_kv = d, d_ff = 2816, L = 24, V = 32000):
  per layer: projections 2 T (2 d^2 + 2 d d_kv + 3 d d_ff); causal attention 2 * 2 d T (T + 1) / 2
  (QK^T and AV over the lower triangle: with no padding generate drops the mask and SDPA runs
  causal); plus the LM head on the last token only, 2 d V. Norms, RoPE, softmax and the residual
  adds are left out (elementwise, < 1%). Ratio = FLOPs(T_full) / FLOPs(T_compressed), T the
  prompt length the LLM saw (text + visual tokens). Target: measured speed-up >= 0.9 x that.

Usage (from the repo root):
  python experiments/perf/bench_prefill.py            # ~6 min on 2 cores; writes prefill.json
  python experiments/perf/bench_prefill.py --quick    # a small LLM, seconds (plumbing check)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import statistics
import sys
from pathlib import Path

import torch
import transformers

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
try:
    import vzexp  # noqa: F401
except ImportError:  # not installed: use the checkout this script lives in
    sys.path.insert(0, str(REPO / "src"))

from probe import CallProbe, pct, quartiles  # noqa: E402  (experiments/perf/probe.py)

from vzexp.compress.none import NoCompression  # noqa: E402
from vzexp.compress.registry import build_compressor  # noqa: E402
from vzexp.engine.evaluate import PhaseTimer  # noqa: E402
from vzexp.models.install import install, installed, uninstall  # noqa: E402
from vzexp.models.tokenizer import CHAT_TEMPLATE, build_word_tokenizer  # noqa: E402

LLM = dict(
    hidden_size=1024,
    intermediate_size=2816,
    num_hidden_layers=24,
    num_attention_heads=16,
    num_key_value_heads=16,
    vocab_size=32000,
    max_position_embeddings=4096,
)
QUICK_LLM = dict(
    LLM,
    hidden_size=128,
    intermediate_size=352,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
)
TOWER = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=336,
    patch_size=14,
    projection_dim=64,
)
# a LLaVA-1.5-length prompt: ~40 text tokens around the image
QUESTION = (
    "a chat between a curious user and an assistant . the assistant gives helpful answers . "
    "what color is the small square to the left of the red circle in the image ?"
)


def llm_params(cfg: dict) -> dict:
    d, f, layers, v = (
        cfg["hidden_size"],
        cfg["intermediate_size"],
        cfg["num_hidden_layers"],
        cfg["vocab_size"],
    )
    kv = d * cfg["num_key_value_heads"] // cfg["num_attention_heads"]
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * f
    return {
        "non_embedding": layers * per_layer,
        "embedding_and_head": 2 * v * d,
        "total": layers * per_layer + 2 * v * d,
    }


def prefill_flops(cfg: dict, t: int) -> float:
    d, f, layers, v = (
        cfg["hidden_size"],
        cfg["intermediate_size"],
        cfg["num_hidden_layers"],
        cfg["vocab_size"],
    )
    kv = d * cfg["num_key_value_heads"] // cfg["num_attention_heads"]
    projections = 2 * t * (2 * d * d + 2 * d * kv + 3 * d * f)
    attention = 2 * 2 * d * t * (t + 1) / 2
    return layers * (projections + attention) + 2 * d * v


def tokenizer():
    words = QUESTION.replace("?", " ").replace(".", " ").split()
    return build_word_tokenizer(words)


def build(case: str, llm: dict, batch: int = 1):
    from transformers import (
        AutoConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextProcessor,
        LlavaProcessor,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.llava_next.image_processing_pil_llava_next import (
        LlavaNextImageProcessorPil,
    )

    tok = tokenizer()
    vision = AutoConfig.for_model("clip_vision_model", **TOWER)
    text = AutoConfig.for_model(
        "llama",
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        **llm,
    )
    common = dict(
        vision_config=vision,
        text_config=text,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(0)
    if case == "llava15":
        model = LlavaForConditionalGeneration._from_config(
            LlavaConfig(**common), attn_implementation="sdpa"
        )
        images = CLIPImageProcessorPil(
            size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}
        )
        processor = LlavaProcessor(
            image_processor=images,
            tokenizer=tok,
            patch_size=14,
            vision_feature_select_strategy="default",
            chat_template=CHAT_TEMPLATE,
            num_additional_image_tokens=1,
        )
        size = (336, 336)
    else:
        pinpoints = [[336, 672], [672, 336], [672, 672]]
        config = LlavaNextConfig(**common, image_grid_pinpoints=pinpoints)
        model = LlavaNextForConditionalGeneration._from_config(config, attn_implementation="sdpa")
        images = LlavaNextImageProcessorPil(
            size={"shortest_edge": 336},
            crop_size={"height": 336, "width": 336},
            image_grid_pinpoints=pinpoints,
        )
        processor = LlavaNextProcessor(
            image_processor=images,
            tokenizer=tok,
            patch_size=14,
            vision_feature_select_strategy="default",
            chat_template=CHAT_TEMPLATE,
            num_additional_image_tokens=1,
        )
        size = (672, 672)
    import numpy as np
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8))
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    inputs = processor(
        images=[image] * batch,
        text=[processor.apply_chat_template(conv, add_generation_prompt=True)] * batch,
        return_tensors="pt",
    )
    return model.eval(), processor, dict(inputs)


ARMS = {
    "llava15": {
        "all_tokens": lambda: NoCompression(select="default"),
        "visionzip_64": lambda: build_compressor("visionzip", dominant=54, contextual=10),
    },
    "next": {
        "all_tokens": lambda: NoCompression(select="default"),
        "visionzip_160": lambda: build_compressor("visionzip", dominant=28, contextual=4),
    },
}


def prefill_once(model, inputs, pad_id) -> tuple[float, int, int, float | None]:
    """(LLM prefill seconds, prompt length the LLM saw, its visual tokens, the share of the
    machine other processes used meanwhile) of one generate call."""
    timer = PhaseTimer()
    stats = installed(model).stats
    stats.reset()
    with torch.no_grad(), CallProbe() as probe:
        model.generate(
            **inputs,
            max_new_tokens=1,
            min_new_tokens=1,
            do_sample=False,
            streamer=timer,
            pad_token_id=pad_id,
        )
    seen = installed(model).last_sequences.shape[1] - 1
    return timer.prefill, seen, stats.visual_tokens, probe.foreign


def run_case(case: str, llm: dict, reps: int, batch: int = 1) -> dict:
    model, processor, inputs = build(case, llm, batch)
    arms = ARMS[case]
    pad = processor.tokenizer.pad_token_id
    times = {a: [] for a in arms}
    foreign = {a: [] for a in arms}
    seen, vision = {}, {}
    compressors = {a: make() for a, make in arms.items()}
    for a in arms:  # warm-up, untimed
        install(model, compressors[a])
        prefill_once(model, inputs, pad)
    for r in range(reps):
        order = list(arms)[r % 2 :] + list(arms)[: r % 2]  # alternate which arm goes first
        for a in order:
            install(model, compressors[a])
            t, n, v, f = prefill_once(model, inputs, pad)
            times[a].append(t)
            foreign[a].append(f)
            seen[a], vision[a] = n, v
            print(
                f"  {case} round {r} {a}: prefill {t:.3f}s over {n} tokens (others {pct(f)})",
                flush=True,
            )
    uninstall(model)
    full, comp = list(arms)
    out = {"arms": {}}
    for a in arms:
        q1, med, q3 = quartiles(times[a])
        out["arms"][a] = {
            "prompt_tokens": seen[a],
            "visual_tokens": vision[a],
            "median_s": med,
            "q1_s": q1,
            "q3_s": q3,
            "times_s": times[a],
            "foreign_cpu_share_max": max([x for x in foreign[a] if x is not None], default=None),
            "flops": batch * prefill_flops(llm, seen[a]),
        }
    speedup = out["arms"][full]["median_s"] / out["arms"][comp]["median_s"]
    paired = statistics.median([x / y for x, y in zip(times[full], times[comp])])
    flop_ratio = out["arms"][full]["flops"] / out["arms"][comp]["flops"]
    out.update(
        speedup=speedup,
        median_paired_speedup=paired,
        flop_ratio=flop_ratio,
        speedup_over_flop_ratio=speedup / flop_ratio,
        target_met=speedup >= 0.9 * flop_ratio,
    )
    del model
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 2-layer LLM: plumbing only")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument(
        "--batch", type=int, default=1, help="prompts per generate call (identical, no padding)"
    )
    parser.add_argument("--cases", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    llm = QUICK_LLM if args.quick else LLM
    name = (
        "prefill-quick" if args.quick else "prefill" + (f"-b{args.batch}" if args.batch > 1 else "")
    )
    out_path = args.out or HERE / f"{name}.json"
    started = _dt.datetime.now(_dt.UTC)
    results = {
        "command": "python experiments/perf/bench_prefill.py " + " ".join(argv or sys.argv[1:]),
        "batch": args.batch,
        "started_utc": started.isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
        },
        "llm": {**llm, "params": llm_params(llm)},
        "flop_model": "per layer 2T(2d^2 + 2d*d_kv + 3d*d_ff) + causal attention 2*2d*T(T+1)/2; LM head on the last token 2dV",
        "cases": {},
    }
    for case in args.cases:
        print(f"{case}:", flush=True)
        results["cases"][case] = run_case(case, llm, args.reps, args.batch)
        c = results["cases"][case]
        print(
            f"  speed-up {c['speedup']:.2f}x vs FLOP ratio {c['flop_ratio']:.2f}x -> {c['speedup_over_flop_ratio']:.2f} of it",
            flush=True,
        )
    results["seconds"] = (_dt.datetime.now(_dt.UTC) - started).total_seconds()
    out_path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
