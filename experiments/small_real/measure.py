"""Measures issue 10's targets on model=small_real_tuned (DINOv2-S -> projector -> SmolLM2-135M,
built by +experiment=build_small_real) and writes results.json + results.md here.

    python experiments/small_real/measure.py [--limit 400] [--model small_real_tuned]

Runs, through the CLI, on the first --limit easy-vqa test questions:
  1. +experiment=small_real_budgets: visionzip, dominant, random, pool and downsample at
     32 / 16 / 8 tokens (one sweep; prefill time per run), and all 64 tokens once;
  2. random at 8 tokens with selection seeds 1 and 2 (seed 0 is in the sweep): its noise.
Every run goes to a fresh MLflow store (--store, default a new temporary directory that is kept),
read back with mlflow.search_runs."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STRATEGIES = ("visionzip", "dominant", "random", "pool", "downsample")
BUDGETS = (32, 16, 8)
TYPES = ("yes/no", "shape", "color")


def sweeps(model: str, limit: int) -> list[list[str]]:
    common = [f"model={model}", f"data.limit={limit}", "data=easy_vqa"]
    return [
        # the experiment's sweep without its 3 identical all-token runs (compressor=none ignores
        # tokens): that one runs once, below
        [
            "+experiment=small_real_budgets",
            "hydra.sweeper.params.compressor='" + ",".join(STRATEGIES) + "'",
        ]
        + common[:2],
        ["-m", "compressor=none", *common],
        ["-m", "compressor=random", "tokens=8", "compressor.seed=1,2", *common],
    ]


def run_sweeps(store: Path, model: str, limit: int) -> list[dict]:
    uri = f"sqlite:///{store / 'mlflow.db'}"
    for args in sweeps(model, limit):
        cmd = [sys.executable, "-m", "vzexp", *args, f"logger.tracking_uri={uri}"]
        print("$", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True, cwd=store, stdout=subprocess.DEVNULL)
    return read_runs(store)


def read_runs(store: Path) -> list[dict]:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    rows = []
    for run in mlflow.search_runs(search_all_experiments=True, output_format="list"):
        if run.data.tags.get("vzexp.sweep") == "parent":
            continue
        p = run.data.params
        rows.append(
            {
                "compressor": p["compressor.name"],
                "tokens": int(p["tokens"]),
                "seed": int(p["compressor.seed"]) if p.get("compressor.seed", "").isdigit() else 0,
                **run.data.metrics,
            }
        )
    return rows


def summarize(rows: list[dict]) -> dict:
    (full,) = [r for r in rows if r["compressor"] == "none"]

    def one(name, tokens, seed=0):
        found = [
            r
            for r in rows
            if r["compressor"] == name and r["tokens"] == tokens and r["seed"] == seed
        ]
        return found[0] if found else None

    table = {
        f"{name}@{t}": {
            "accuracy": r["accuracy"],
            "retention": r["accuracy"] / full["accuracy"],
            **{t_: r.get(f"accuracy/{t_}") for t_ in TYPES},
            "llm_prefill_ms_per_sample": r.get("llm_prefill_ms_per_sample"),
            "visual_tokens": r.get("visual_tokens"),
        }
        for name in STRATEGIES
        for t in BUDGETS
        if (r := one(name, t))
    }
    randoms = [r["accuracy"] for r in rows if r["compressor"] == "random" and r["tokens"] == 8]
    vz8 = one("visionzip", 8)
    return {
        "all_tokens": {
            "accuracy": full["accuracy"],
            **{t: full.get(f"accuracy/{t}") for t in TYPES},
            "samples": full.get("samples"),
            "llm_prefill_ms_per_sample": full.get("llm_prefill_ms_per_sample"),
        },
        "budgets": table,
        "random_8_seeds": {
            "values": randoms,
            "mean": statistics.mean(randoms),
            "std": statistics.stdev(randoms) if len(randoms) > 1 else 0.0,
        },
        "visionzip_8_minus_random_8_mean": vz8["accuracy"] - statistics.mean(randoms),
        "visionzip_8_retention": vz8["accuracy"] / full["accuracy"],
    }


def markdown(s: dict, model: str, limit: int, seconds: float) -> str:
    full = s["all_tokens"]
    lines = [
        "# small_real: measured targets",
        "",
        f"Command: `python experiments/small_real/measure.py --model {model} --limit {limit}` "
        f"({seconds / 60:.1f} min on {platform.machine()}, 2 cores). easy-vqa test, first {limit} "
        "questions; 8 tokens = 1/8 of the 64 patches.",
        "",
        f"All 64 tokens: **{full['accuracy']:.4f}** (yes/no {full['yes/no']:.3f}, shape "
        f"{full['shape']:.3f}, color {full['color']:.3f}); LLM prefill "
        f"{full['llm_prefill_ms_per_sample']:.1f} ms per sample.",
        "",
        "| strategy | tokens | accuracy | kept | yes/no | shape | color | LLM prefill ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, r in s["budgets"].items():
        name, tokens = key.split("@")
        lines.append(
            f"| {name} | {tokens} | {r['accuracy']:.4f} | {r['retention']:.1%} | "
            f"{r['yes/no']:.3f} | {r['shape']:.3f} | {r['color']:.3f} | "
            f"{r['llm_prefill_ms_per_sample']:.1f} |"
        )
    rnd = s["random_8_seeds"]
    lines += [
        "",
        f"- VisionZip at 8 tokens keeps **{s['visionzip_8_retention']:.1%}** of the all-token "
        "accuracy.",
        "- Random at 8 tokens over selection seeds 0, 1, 2: "
        + ", ".join(f"{v:.4f}" for v in rnd["values"])
        + f" (mean {rnd['mean']:.4f}, std {rnd['std']:.4f}); VisionZip - random = "
        f"**{s['visionzip_8_minus_random_8_mean']:+.4f}**.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=400)
    parser.add_argument("--model", default="small_real_tuned")
    parser.add_argument("--store", help="directory for the runs and their MLflow store")
    parser.add_argument("--reuse", action="store_true", help="summarize the runs in --store")
    args = parser.parse_args()
    start = time.perf_counter()
    store = Path(args.store or tempfile.mkdtemp(prefix="small_real-"))
    store.mkdir(parents=True, exist_ok=True)
    print(f"runs and MLflow store: {store} (--store {store} --reuse summarizes them again)")
    rows = read_runs(store) if args.reuse else run_sweeps(store, args.model, args.limit)
    summary = summarize(rows)
    seconds = time.perf_counter() - start
    stem = "results" if args.model == "small_real_tuned" else f"results-{args.model}"
    (HERE / f"{stem}.json").write_text(
        json.dumps({"summary": summary, "runs": rows}, indent=2, default=str) + "\n"
    )
    text = markdown(summary, args.model, args.limit, seconds)
    (HERE / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
