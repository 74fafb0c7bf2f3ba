"""VisionZip's fine-tuning step on the default model against random selection given the same step,
at 24 tokens, from the latest `+experiment=tune_tiny_budget` sweep: per seed, training-free and
tuned accuracy, the tuned accuracy as a share of the untouched model's all-token accuracy on the
same test split (results.json, measure.py), and the VisionZip - random margin against the seed
noise. Writes results.tuned.{md,json} beside this script.

    python -m vzexp +experiment=tune_tiny_budget
    python experiments/tiny_default/summarize_tuned.py [--suffix .NAME]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from vzexp.data.shapes import QUESTION_TYPES as TYPES
from vzexp.tracking import is_sweep_parent, tracking_uri

HERE = Path(__file__).parent
STRATEGIES = ("visionzip", "random")


RECIPE_PARAMS = ("train_data.scenes", "task.epochs", "task.lr", "task.llm_layers", "task.llm_lr")


def sweep_runs(
    client: MlflowClient, experiment: str
) -> tuple[str, dict[str, dict[int, dict]], dict[str, str]]:
    """(sweep id, {compressor: {seed: metrics}}, the tuning recipe's params) of the experiment's
    latest sweep."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise SystemExit(
            f"no MLflow experiment {experiment!r}: run python -m vzexp +experiment={experiment}"
        )
    runs = client.search_runs([found.experiment_id], order_by=["attributes.start_time DESC"])
    parent = next(r for r in runs if is_sweep_parent(r))
    out: dict[str, dict[int, dict]] = {}
    recipes = set()
    for r in runs:
        if (
            r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
            and r.info.status == "FINISHED"
        ):
            name = r.data.params["compressor.name"]
            out.setdefault(name, {})[int(r.data.params["seed"])] = r.data.metrics
            recipes.add(tuple(r.data.params[k] for k in RECIPE_PARAMS))
    if len(recipes) > 1:  # a sweep over the recipe itself is not one result
        raise SystemExit(f"sweep {parent.info.run_id}: its runs differ in {RECIPE_PARAMS}")
    recipe = dict(zip(RECIPE_PARAMS, recipes.pop())) if recipes else {}
    return parent.info.run_id, out, recipe


def all_token_accuracy() -> dict[int, float]:
    """The shipped model's all-token accuracy per test-split seed, as measure.py measured it."""
    runs = json.loads((HERE / "results.json").read_text())["runs"]
    return {r["split_seed"]: r["accuracy"] for r in runs if r["compressor"] == "none"}


def stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", default="tune_tiny_budget")
    parser.add_argument("--suffix", default="", help="results.tuned<suffix>.{md,json}")
    args = parser.parse_args()
    sweep, runs, recipe = sweep_runs(MlflowClient(tracking_uri(None)), args.experiment)
    full = all_token_accuracy()
    seeds = sorted(set.intersection(*(set(runs.get(s, {})) for s in STRATEGIES)))
    if not seeds:
        raise SystemExit(f"sweep {sweep}: no seed finished for both {' and '.join(STRATEGIES)}")
    table = {
        s: {
            "training_free": [runs[s][k]["baseline/accuracy"] for k in seeds],
            "tuned": [runs[s][k]["accuracy"] for k in seeds],
        }
        for s in STRATEGIES
    }
    retention = [runs["visionzip"][k]["accuracy"] / full[k] for k in seeds]
    margins = [runs["visionzip"][k]["accuracy"] - runs["random"][k]["accuracy"] for k in seeds]
    summary = {
        "sweep": sweep,
        "seeds": seeds,
        "recipe": recipe,
        "all_tokens": [full[k] for k in seeds],
        "strategies": {
            s: {k: stats(v) | {"per_seed": v} for k, v in t.items()} for s, t in table.items()
        },
        "retention_tuned_visionzip": stats(retention) | {"per_seed": retention},
        "margin_tuned_visionzip_minus_tuned_random": stats(margins) | {"per_seed": margins},
        "per_type_tuned_mean": {
            s: {t: statistics.mean(runs[s][k][f"accuracy/{t}"] for k in seeds) for t in TYPES}
            for s in STRATEGIES
        },
        "tune_epoch_seconds": {
            s: statistics.mean(runs[s][k]["tune/epoch_seconds"] for k in seeds) for s in STRATEGIES
        },
    }
    (HERE / f"results.tuned{args.suffix}.json").write_text(json.dumps(summary, indent=1) + "\n")

    def row(name: str, values: list[float]) -> str:
        st = stats(values)
        cells = " | ".join(f"{v:.4f}" for v in values)
        return f"| {name} | {cells} | {st['mean']:.4f} | {st['std']:.4f} |"

    head = " | ".join(f"seed {k}" for k in seeds)
    lines = [
        "# Tiny default: VisionZip's fine-tuning step at 24 tokens, against random given the same step",
        "",
        f"Command: `python -m vzexp +experiment=tune_tiny_budget` then "
        f"`python experiments/tiny_default/summarize_tuned.py` (MLflow sweep {sweep}).",
        f"Model tiny_shapes (shipped), 24 of 196 tokens; tuned over "
        f"{int(recipe['train_data.scenes']):,} training scenes for {recipe['task.epochs']} epochs "
        f"(projector lr {recipe['task.lr']}, its last {recipe['task.llm_layers']} LLM layers at "
        f"{recipe['task.llm_lr']}). Each seed sets the training scenes, their order, the "
        "800-question test split and random's selection.",
        "",
        f"| | {head} | mean | std |",
        "|---|" + "---|" * (len(seeds) + 2),
        row("all 196 tokens, untouched model (results.json)", [full[k] for k in seeds]),
    ]
    for s in STRATEGIES:
        lines.append(row(f"{s}, training-free", table[s]["training_free"]))
        lines.append(row(f"{s}, tuned", table[s]["tuned"]))
    ret, mar = (
        summary["retention_tuned_visionzip"],
        summary["margin_tuned_visionzip_minus_tuned_random"],
    )
    lines += [
        "",
        f"- Tuned VisionZip keeps **{ret['mean']:.1%}** of the untouched model's all-token accuracy "
        f"(per seed: {', '.join(f'{v:.1%}' for v in retention)}).",
        f"- Tuned VisionZip - tuned random = **{mar['mean']:+.4f}** (per seed: "
        f"{', '.join(f'{v:+.4f}' for v in margins)}); seed std of the tuned accuracies: VisionZip "
        f"{summary['strategies']['visionzip']['tuned']['std']:.4f}, random "
        f"{summary['strategies']['random']['tuned']['std']:.4f}.",
        "",
        "## Per question type, tuned (mean over the seeds)",
        "",
        "| type | " + " | ".join(STRATEGIES) + " |",
        "|---|" + "---|" * len(STRATEGIES),
    ]
    for t in TYPES:
        lines.append(
            f"| {t} | "
            + " | ".join(f"{summary['per_type_tuned_mean'][s][t]:.3f}" for s in STRATEGIES)
            + " |"
        )
    text = "\n".join(lines) + "\n"
    (HERE / f"results.tuned{args.suffix}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
