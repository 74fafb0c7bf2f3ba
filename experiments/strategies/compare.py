"""Every strategy at three budgets on the default model (tiny_shapes, shapes test split), as vzexp
sweeps into one MLflow store; the runs are then read back from MLflow into results.md/.json.

    python experiments/strategies/compare.py [--store DIR] [--tokens 24,48,72] [--limit N]

Random selection runs with compressor.seed = 0, 1, 2 (mean and std reported). The efficiency
columns come from the same runs: visual tokens entering the LLM, the mean over the LLM's layers
(LLM-side strategies prune inside it), prefill time per sample, and the selection overhead =
the strategy's own time / the vision tower's forward time (LLM-side: time of their scoring hooks).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from vzexp.compress.none import NoCompression
from vzexp.compress.registry import strategies

HERE = Path(__file__).resolve().parent
# every registered strategy (python -m vzexp.list compressor); `none` runs once, as the baseline
ENCODER_SIDE = strategies(lambda cls: cls.kind == "encoder" and cls is not NoCompression)
LLM_SIDE = strategies(lambda cls: cls.kind == "llm")
COLUMNS = ["accuracy", "visual_tokens_llm", "prefill_ms_per_sample", "selection_overhead"]


def sweep(args: list[str], uri: str, cwd: Path) -> float:
    command = [sys.executable, "-m", "vzexp", "-m", *args]
    command += [f"logger.tracking_uri={uri}", "logger.experiment_name=strategies"]
    print("$", " ".join(command[1:]), flush=True)
    start = time.time()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.time() - start


def read_runs(uri: str) -> list[dict]:
    from mlflow.tracking import MlflowClient

    from vzexp.tracking import is_sweep_parent

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("strategies")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    out = []
    for run in runs:
        if is_sweep_parent(run):
            continue
        p, m = run.data.params, run.data.metrics
        out.append(
            {
                "compressor": p["compressor.name"],
                "tokens": int(p["tokens"]),
                "seed": int(p.get("compressor.seed", 0)),
                "status": run.info.status,
                **{k: m[k] for k in m},
            }
        )
    return out


def table(runs: list[dict], budgets: list[int]) -> tuple[str, dict]:
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for r in runs:
        groups[(r["compressor"], r["tokens"])].append(r)
    full = next(r for r in runs if r["compressor"] == "none")
    summary: dict = {"none": {k: full[k] for k in COLUMNS + ["accuracy/count"]}}
    header = ["strategy", *(f"acc @{b}" for b in budgets), *(f"LLM tokens @{b}" for b in budgets)]
    header += [f"prefill ms @{budgets[0]}", f"overhead @{budgets[0]}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.append(
        f"| all {int(full['visual_tokens'])} tokens | {full['accuracy']:.3f} |"
        + " |" * (len(budgets) - 1)
        + f" {full['visual_tokens_llm']:.0f} |"
        + " |" * (len(budgets) - 1)
        + f" {full['prefill_ms_per_sample']:.2f} | - |"
    )
    for name in ENCODER_SIDE + LLM_SIDE:
        summary[name] = {}
        accs, tokens = [], []
        for b in budgets:
            group = groups.get((name, b), [])
            values = [g["accuracy"] for g in group]
            entry = {
                "accuracy": statistics.mean(values),
                "accuracy_std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "runs": len(values),
                **{k: statistics.mean(g[k] for g in group) for k in COLUMNS[1:]},
                "accuracy/count": statistics.mean(g["accuracy/count"] for g in group),
            }
            summary[name][b] = entry
            acc = f"{entry['accuracy']:.3f}"
            if len(values) > 1:
                acc += f" ± {entry['accuracy_std']:.3f} ({len(values)} seeds)"
            accs.append(acc)
            tokens.append(f"{entry['visual_tokens_llm']:.0f}")
        first = summary[name][budgets[0]]
        lines.append(
            f"| {name} | "
            + " | ".join(accs + tokens)
            + f" | {first['prefill_ms_per_sample']:.2f} | {first['selection_overhead']:.3f} |"
        )
    return "\n".join(lines), summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="/tmp/vzexp-strategies")
    parser.add_argument("--tokens", default="24,48,72")
    parser.add_argument("--limit", type=int, default=None, help="data.limit (default: all 800)")
    args = parser.parse_args()
    store = Path(args.store)
    store.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    limit = [] if args.limit is None else [f"data.limit={args.limit}"]
    budgets = [int(t) for t in args.tokens.split(",")]
    seconds = sweep(["compressor=none", *limit], uri, store)
    seconds += sweep(
        [f"compressor={','.join(ENCODER_SIDE + LLM_SIDE)}", f"tokens={args.tokens}", *limit],
        uri,
        store,
    )
    seconds += sweep(
        ["compressor=random", "compressor.seed=1,2", f"tokens={args.tokens}", *limit], uri, store
    )
    runs = read_runs(uri)
    failed = [r for r in runs if r["status"] != "FINISHED"]
    markdown, summary = table(runs, budgets)
    result = {
        "command": "python experiments/strategies/compare.py"
        + (f" --limit {args.limit}" if args.limit else ""),
        "budgets": budgets,
        "runs": len(runs),
        "failed_runs": len(failed),
        "sweep_seconds": round(seconds, 1),
        "summary": {
            k: {str(b): v for b, v in s.items()} if k != "none" else s for k, s in summary.items()
        },
    }
    (HERE / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (HERE / "results.md").write_text(
        f"Command: `{result['command']}` ({len(runs)} MLflow runs, {len(failed)} not FINISHED, "
        f"{seconds / 60:.1f} min of sweeps)\n\n{markdown}\n"
    )
    print(markdown)


if __name__ == "__main__":
    main()
