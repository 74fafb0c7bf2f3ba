"""Training-free vs tuned accuracy of the latest `+experiment=tune_projector` sweep, per seed and
as mean +- std, per question type: results.md beside this script.

    python experiments/tune_projector/summarize.py [--experiment tune_projector]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from vzexp.data.shapes import QUESTION_TYPES as TYPES
from vzexp.tracking import is_sweep_parent, tracking_uri


def mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} +- {sd:.4f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", default="tune_projector")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.md"))
    args = parser.parse_args()
    client = MlflowClient(tracking_uri(None))
    experiment = client.get_experiment_by_name(args.experiment)
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    parent = next(r for r in runs if is_sweep_parent(r))
    children = sorted(
        (r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
        key=lambda r: int(r.data.params["seed"]),
    )
    lines = [
        f"Sweep {parent.info.run_id} ({len(children)} runs), MLflow experiment {args.experiment}.",
        "",
        "| seed | training-free | tuned | gain | final loss | epoch s |",
        "|---|---|---|---|---|---|",
    ]
    for r in children:
        m = r.data.metrics
        lines.append(
            f"| {r.data.params['seed']} | {m['baseline/accuracy']:.4f} | {m['accuracy']:.4f} | "
            f"{m['tune/accuracy_gain']:+.4f} | {m['tune/final_loss']:.4f} | "
            f"{m['tune/epoch_seconds']:.1f} |"
        )
    col = {
        k: [r.data.metrics[k] for r in children]
        for k in ("baseline/accuracy", "accuracy", "tune/accuracy_gain")
    }
    lines.append(
        f"| mean +- std | {mean_std(col['baseline/accuracy'])} | {mean_std(col['accuracy'])} | "
        f"{mean_std(col['tune/accuracy_gain'])} | | |"
    )
    lines += [
        "",
        "Per question type (mean over the seeds):",
        "",
        "| type | training-free | tuned |",
        "|---|---|---|",
    ]
    for t in TYPES:
        base = statistics.mean(r.data.metrics[f"baseline/accuracy/{t}"] for r in children)
        tuned = statistics.mean(r.data.metrics[f"accuracy/{t}"] for r in children)
        lines.append(f"| {t} | {base:.3f} | {tuned:.3f} |")
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
