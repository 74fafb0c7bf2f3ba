"""Measures the tiny default's targets and writes results.json + results.md here.

    python experiments/tiny_default/measure.py
    python experiments/tiny_default/measure.py --model tiny_shapes_budget   # -> results.tiny_shapes_budget.*

Runs, through the CLI, on the shipped model=tiny_shapes and the shapes test split (800 questions):
  1. all tokens and VisionZip at the default budget (24 = 1/8 of 196 patches), test-split seeds 0,1,2;
  2. random selection at the same budget, same seeds (selection seed = split seed);
  3. a budget curve (12, 24, 48, 96 tokens) for visionzip, dominant-only and random, seed 0.
Every run goes to a fresh MLflow store in a temporary directory, read back with mlflow.search_runs."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEEDS = (0, 1, 2)
DEFAULT_MODEL = "tiny_shapes"
SWEEPS = [
    ["-m", "compressor=none,visionzip", "data.dataset.seed=0,1,2"],
    ["-m", "compressor=random", "data.dataset.seed=0,1,2", "compressor.seed=${data.dataset.seed}"],
    ["-m", "compressor=visionzip,dominant,random", "tokens=12,24,48,96"],
]


def run_sweeps(store: Path, model: str) -> list[dict]:
    import mlflow

    env_uri = f"sqlite:///{store / 'mlflow.db'}"
    for args in SWEEPS:
        cmd = [sys.executable, "-m", "vzexp", *args, f"model={model}"]
        cmd.append(f"logger.tracking_uri={env_uri}")
        print("$", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True, cwd=store, stdout=subprocess.DEVNULL)
    mlflow.set_tracking_uri(env_uri)
    rows = []
    for run in mlflow.search_runs(experiment_names=["vzexp"], output_format="list"):
        if run.data.tags.get("vzexp.sweep") == "parent":  # a sweep's parent run holds no job
            continue
        p, m = run.data.params, run.data.metrics
        rows.append(
            {
                "compressor": p["compressor.name"],
                "tokens": int(p["tokens"]),
                "split_seed": int(p["data.dataset.seed"]),
                "sweep": run.data.tags.get("vzexp.overrides", ""),
                **m,
            }
        )
    return rows


def summarize(rows: list[dict]) -> dict:
    def pick(compressor, tokens=None, sweep_has=None):
        return [
            r
            for r in rows
            if r["compressor"] == compressor
            and (tokens is None or r["tokens"] == tokens)
            and (sweep_has is None or sweep_has in r["sweep"])
        ]

    def stats(runs, key="accuracy"):
        values = [r[key] for r in sorted(runs, key=lambda r: r["split_seed"])]
        return {
            "values": values,
            "mean": statistics.mean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        }

    full = pick("none")
    vz = [r for r in pick("visionzip", 24) if "data.dataset.seed=" in r["sweep"]]
    rnd = [r for r in pick("random", 24) if "data.dataset.seed=" in r["sweep"]]
    types = sorted(k.split("/", 1)[1] for k in full[0] if k.startswith("accuracy/"))
    per_type = {
        t: {
            name: statistics.mean(r[f"accuracy/{t}"] for r in runs)
            for name, runs in (("all_tokens", full), ("visionzip_24", vz), ("random_24", rnd))
        }
        for t in types
    }
    retention = [
        v["accuracy"] / f["accuracy"]
        for v, f in zip(
            sorted(vz, key=lambda r: r["split_seed"]),
            sorted(full, key=lambda r: r["split_seed"]),
            strict=True,
        )
    ]
    margins = [
        v["accuracy"] - r["accuracy"]
        for v, r in zip(
            sorted(vz, key=lambda r: r["split_seed"]),
            sorted(rnd, key=lambda r: r["split_seed"]),
            strict=True,
        )
    ]
    curve = {
        f"{c}@{r['tokens']}": r["accuracy"]
        for c in ("visionzip", "dominant", "random")
        for r in pick(c, sweep_has="tokens=")
    }
    return {
        "all_tokens": stats(full),
        "visionzip_24": stats(vz),
        "random_24": stats(rnd),
        "retention_visionzip_24": {"values": retention, "mean": statistics.mean(retention)},
        "margin_visionzip_minus_random": {
            "values": margins,
            "mean": statistics.mean(margins),
            "random_std": stats(rnd)["std"],
            "visionzip_std": stats(vz)["std"],
        },
        "per_type_mean_over_seeds": per_type,
        "budget_curve_seed0": curve,
        "prefill_ms_per_sample": {
            "all_tokens": statistics.mean(r["prefill_ms_per_sample"] for r in full),
            "visionzip_24": statistics.mean(r["prefill_ms_per_sample"] for r in vz),
        },
    }


def markdown(summary: dict, seconds: float, model: str) -> str:
    s = summary
    lines = [
        f"# Tiny default: measured targets ({model})",
        "",
        f"Command: `python experiments/tiny_default/measure.py{command_suffix(model)}` "
        f"({seconds / 60:.1f} min on {platform.machine()}, 2 cores). Model `{model}` (shipped), "
        "shapes test split, 800 questions "
        "per split seed (seeds 0, 1, 2); 24 tokens = 1/8 of the 196 patches.",
        "",
        "| | seed 0 | seed 1 | seed 2 | mean | std |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in (
        ("all_tokens", "all 196 tokens"),
        ("visionzip_24", "VisionZip, 24 tokens"),
        ("random_24", "random, 24 tokens"),
    ):
        v = s[key]
        lines.append(
            f"| {label} | "
            + " | ".join(f"{x:.3f}" for x in v["values"])
            + f" | {v['mean']:.3f} | {v['std']:.3f} |"
        )
    r, m = s["retention_visionzip_24"], s["margin_visionzip_minus_random"]
    lines += [
        "",
        f"- VisionZip keeps **{r['mean']:.1%}** of full-token accuracy (per seed: "
        + ", ".join(f"{x:.1%}" for x in r["values"])
        + ").",
        f"- VisionZip - random = **{m['mean']:+.3f}** (per seed: "
        + ", ".join(f"{x:+.3f}" for x in m["values"])
        + f"); seed-to-seed std: random {m['random_std']:.3f}, VisionZip {m['visionzip_std']:.3f}.",
        f"- Prefill per sample: {s['prefill_ms_per_sample']['all_tokens']:.2f} ms (all) vs "
        f"{s['prefill_ms_per_sample']['visionzip_24']:.2f} ms (VisionZip 24), batch 16.",
        "",
        "## Per question type (mean over the 3 seeds)",
        "",
        "| type | all tokens | VisionZip 24 | random 24 |",
        "|---|---|---|---|",
    ]
    for t, v in s["per_type_mean_over_seeds"].items():
        lines.append(
            f"| {t} | {v['all_tokens']:.3f} | {v['visionzip_24']:.3f} | {v['random_24']:.3f} |"
        )
    lines += [
        "",
        "## Budget curve (split seed 0)",
        "",
        "| tokens | visionzip | dominant only | random |",
        "|---|---|---|---|",
    ]
    for t in (12, 24, 48, 96):
        c = s["budget_curve_seed0"]
        lines.append(
            f"| {t} | {c.get(f'visionzip@{t}', float('nan')):.3f} | {c.get(f'dominant@{t}', float('nan')):.3f} | {c.get(f'random@{t}', float('nan')):.3f} |"
        )
    return "\n".join(lines) + "\n"


def command_suffix(model: str) -> str:
    return "" if model == DEFAULT_MODEL else f" --model {model}"


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="a shipped tiny model config")
    model = parser.parse_args().model
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_sweeps(Path(tmp), model)
    summary = summarize(rows)
    seconds = time.perf_counter() - start
    stem = "results" if model == DEFAULT_MODEL else f"results.{model}"
    (HERE / f"{stem}.json").write_text(
        json.dumps({"model": model, "summary": summary, "runs": rows}, indent=2) + "\n"
    )
    text = markdown(summary, seconds, model)
    (HERE / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
