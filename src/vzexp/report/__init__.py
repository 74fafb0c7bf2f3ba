"""`python -m vzexp.report`: MLflow runs -> the paper-style table and an accuracy-vs-tokens plot.

    python -m vzexp.report --experiment vzexp [--parent RUN_ID] [--uri URI] [--out DIR]
                           [--metrics NAME,...]

Reads the job runs of an experiment (optionally only the children of one sweep's parent run),
and writes into DIR (default: report/):
  * report.md: per benchmark and model, strategy x budget, accuracy and its % of the full-token
    score (the `compressor=none` run of the same benchmark and model), as the paper's tables;
    with --metrics, a table of those logged metrics per strategy and budget under each;
  * report.csv: the same, one row per run, with the efficiency figures (and --metrics);
  * accuracy_vs_tokens.png: accuracy against the visual tokens the LLM sees on average.
With --parent (or the newest sweep parent when --parent=latest) the three files are also logged
as artifacts of that parent run.

    python -m vzexp.report --published visionzip
    python -m vzexp.report --experiment paper_llava15 --parent latest --compare visionzip
    python -m vzexp.report --plan paper_llava15 [--root DIR]

--published prints a paper's published table (vzexp/resources/published/<name>.yaml, or a path
to a file of that schema) and needs no MLflow. --compare lays the runs out as that paper's
tables (rows = method x budget, columns = benchmarks + Avg. %), with the published cells and the
differences (cells the sweep lacks, e.g. the full-token runs of their own sweep, are taken from
the newest run of the same experiment), and writes paper.md, paper.csv and paper_vs_tokens.png (also logged on the parent).
--plan lists the jobs of a paper_* experiment and estimates their GPU hours (vzexp.report.plan).
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from vzexp.atomic import atomic_path
from vzexp.tracking import DEFAULT_EXPERIMENT, is_sweep_parent, tracking_uri

FIELDS = [
    "benchmark",
    "model",
    "strategy",
    "variant",
    "tokens",
    "seed",
    "data_seed",
    "accuracy",
    "percent_of_full",
    "visual_tokens",
    "visual_tokens_llm",
    "prefill_ms_per_sample",
    "selection_overhead",
    "run_id",
]


def job_rows(client, experiment_name: str, parent: str | None) -> list[dict]:
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise SystemExit(f"vzexp.report: error: no MLflow experiment named {experiment_name!r}")
    rows = []
    for run in client.search_runs(
        [experiment.experiment_id], max_results=5000, order_by=["attributes.start_time DESC"]
    ):
        if is_sweep_parent(run) or run.info.status != "FINISHED":
            continue
        if parent and run.data.tags.get("mlflow.parentRunId") != parent:
            continue
        p, m = run.data.params, run.data.metrics
        if "accuracy" not in m:
            continue
        rows.append(
            {
                "benchmark": p.get("data.name", "?"),
                "model": p.get("model.name", "?"),
                "strategy": p.get("compressor.name", "?"),
                "tokens": int(m.get("visual_tokens", 0)),
                "seed": p.get("compressor.seed", ""),
                "data_seed": p.get("data.dataset.seed", ""),
                "accuracy": m["accuracy"],
                "visual_tokens": m.get("visual_tokens"),
                "visual_tokens_llm": m.get("visual_tokens_llm", m.get("visual_tokens")),
                "prefill_ms_per_sample": m.get("prefill_ms_per_sample"),
                "selection_overhead": m.get("selection_overhead"),
                "run_id": run.info.run_id,
                "budget": int(p.get("tokens", 0)),
                "metrics": dict(m),
                "tuned": p.get("model.projector", "None") not in ("None", "", "null"),
                "duration_s": (run.info.end_time - run.info.start_time) / 1000
                if run.info.end_time and run.info.start_time
                else None,
                "overrides": run.data.tags.get("vzexp.overrides", "").split(),
            }
        )
    return with_variants(rows)


# Overrides that a row's label leaves out: the table's own axes, and seeds (averaged over).
AXES = ("tokens=", "compressor=", "seed=", "compressor.seed=", "data=", "model=")


def with_variants(rows: list[dict]) -> list[dict]:
    """Label each run by its strategy plus the overrides that differ between the runs reported
    (e.g. `visionzip merge=mean target_pick=random` in an ablation sweep), so that sweeps over
    strategy parameters get one table row per setting instead of one averaged cell."""
    common = set.intersection(*(set(r["overrides"]) for r in rows)) if rows else set()
    for r in rows:
        own = sorted(o for o in r["overrides"] if o not in common and not o.startswith(AXES))
        r["variant"] = " ".join([r["strategy"], *(o.removeprefix("compressor.") for o in own)])
    return rows


# decimals kept in report.csv: timings and token counts are noisy beyond these
ROUNDING = {
    "prefill_ms_per_sample": 2,
    "selection_overhead": 4,
    "visual_tokens": 2,
    "visual_tokens_llm": 2,
    "percent_of_full": 2,
}


def rounded(row: dict) -> dict:
    """A report row with its timing and token figures rounded (ROUNDING)."""
    out = dict(row)
    for key, places in ROUNDING.items():
        if isinstance(out.get(key), float):
            out[key] = round(out[key], places)
    return out


def with_percentages(rows: list[dict], reference: list[dict] = ()) -> list[dict]:
    """% of the full-token accuracy of the same benchmark and model, from the `compressor=none`
    runs among `rows`, else among `reference` (another experiment's runs): the mean of those on the
    same data sample (`data.dataset.seed`, for generated benchmarks) where there are some, else of
    all of them."""
    full = defaultdict(list)
    own = {(r["benchmark"], r["model"]) for r in rows if r["strategy"] == "none"}
    borrowed = [r for r in reference if (r["benchmark"], r["model"]) not in own]
    rows = rows + [r for r in borrowed if r["strategy"] == "none"]
    for r in distinct_full_runs(rows):
        full[(r["benchmark"], r["model"])].append(r["accuracy"])
        full[(r["benchmark"], r["model"], r.get("data_seed", ""))].append(r["accuracy"])
    for r in rows:
        same = full.get((r["benchmark"], r["model"], r.get("data_seed", "")))
        reference = same or full.get((r["benchmark"], r["model"]))
        mean = statistics.fmean(reference) if reference else None
        r["percent_of_full"] = 100 * r["accuracy"] / mean if mean else None
    return rows


def natural(text: str) -> list:
    """Sort key that puts dominant=4 before dominant=12."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def cell(runs: list[dict], reference: bool = False) -> str:
    """Mean accuracy, its % of the full-token score and, over several runs (seeds, splits), the
    sample standard deviation and the number of runs: `0.450 ± 0.071 (56.2%) [2 runs]`; the
    full-token reference itself is `(100%)`."""
    accuracies = [r["accuracy"] for r in runs]
    text = f"{statistics.fmean(accuracies):.3f}"
    if len(runs) > 1:
        text += f" ± {statistics.stdev(accuracies):.3f}"
    pct = [r["percent_of_full"] for r in runs if r["percent_of_full"] is not None]
    if reference:
        text += " (100%)"
    elif pct:
        text += f" ({statistics.fmean(pct):.1f}%)"
    if len(runs) > 1:
        text += f" [{len(runs)} runs]"
    return text


def distinct_full_runs(group: list[dict]) -> list[dict]:
    """The `compressor=none` runs of a group, one per setting: a sweep over `tokens` repeats the
    same full-token job once per budget (`none` ignores it), which is one measurement, not many."""
    seen = {}
    for r in group:
        if r["strategy"] == "none":
            key = (r["benchmark"], r["model"])
            key += tuple(sorted(o for o in r["overrides"] if not o.startswith("tokens=")))
            seen.setdefault(key, r)
    return list(seen.values())


# Beyond this many budgets (e.g. an Optuna search) the table is long: one line per budget.
WIDE_LIMIT = 8


def metrics_markdown(rows: list[dict], metrics: list[str]) -> list[str]:
    """A table of the chosen metrics (as each run logged them; the mean over a cell's runs), one
    line per strategy setting and budget: the figures a study reads beyond accuracy."""
    cells = defaultdict(list)
    for r in rows:
        full = r["strategy"] == "none"
        cells[("all tokens", "all") if full else (r["variant"], r["budget"])].append(r)

    def order(key):
        label, budget = key
        return (label != "all tokens", natural(label), 0 if budget == "all" else budget)

    header = "| strategy | tokens | " + " | ".join(metrics) + " |"
    out = [header, "|---|---|" + "---|" * len(metrics)]
    for label, budget in sorted(cells, key=order):
        runs = cells[(label, budget)]
        if label == "all tokens":
            runs = distinct_full_runs(runs)
        values = []
        for name in metrics:
            found = [r["metrics"][name] for r in runs if name in r["metrics"]]
            values.append(f"{statistics.fmean(found):.4g}" if found else "")
        out.append(f"| {label} | {budget} | " + " | ".join(values) + " |")
    return out


def markdown(rows: list[dict], metrics: list[str] = ()) -> str:
    out = []
    groups = defaultdict(list)
    for r in rows:
        groups[(r["benchmark"], r["model"])].append(r)
    for (benchmark, model), group in sorted(groups.items()):
        budgets = sorted({r["budget"] for r in group if r["strategy"] != "none"})
        variants = sorted({r["variant"] for r in group if r["strategy"] != "none"}, key=natural)
        full = distinct_full_runs(group)
        out += [f"### {benchmark} / {model}", ""]
        wide = len(budgets) <= WIDE_LIMIT
        if wide:
            out.append("| strategy | " + " | ".join(f"{b} tokens" for b in budgets) + " |")
            out.append("|---|" + "---|" * len(budgets))
        else:
            out += ["| strategy | tokens | accuracy |", "|---|---|---|"]
        if full:
            everything = cell(full, reference=True)
            if wide:
                out.append(
                    f"| all {full[0]['tokens']} tokens | {everything} |" + " |" * (len(budgets) - 1)
                )
            else:
                out.append(f"| all tokens | {full[0]['tokens']} | {everything} |")
        for variant in variants:
            by_budget = {
                b: [r for r in group if r["variant"] == variant and r["budget"] == b]
                for b in budgets
            }
            if wide:
                cells = [cell(runs) if runs else "" for runs in by_budget.values()]
                out.append(f"| {variant} | " + " | ".join(cells) + " |")
            else:
                out += [
                    f"| {variant} | {b} | {cell(runs)} |" for b, runs in by_budget.items() if runs
                ]
        out.append("")
        if metrics:
            out += [*metrics_markdown(group, list(metrics)), ""]
    return "\n".join(out)


# up to 20 series, each its own colour (tab20) and marker
MARKERS = "osD^v<>pPX*hH8dso^Dv"


def series_style(i: int) -> dict:
    import matplotlib

    return {"color": matplotlib.colormaps["tab20"](i % 20), "marker": MARKERS[i % len(MARKERS)]}


def plot_title(benchmark: str, model: str, group: list[dict]) -> str:
    """`benchmark / model, N samples` (the samples each run scored; a range when they differ)."""
    counts = sorted({int(r["metrics"]["samples"]) for r in group if "samples" in r["metrics"]})
    if not counts:
        return f"{benchmark} / {model}"
    samples = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"{benchmark} / {model}, {samples} samples"


def plot(rows: list[dict], path: Path) -> None:
    """Per benchmark and model: accuracy against the visual tokens the LLM sees, one line per
    variant; a bar per variant instead when the sweep has one budget (its variants would stack
    at one x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = defaultdict(list)
    for r in rows:
        groups[(r["benchmark"], r["model"])].append(r)
    fig, axes = plt.subplots(1, len(groups), figsize=(7 * len(groups), 5), squeeze=False)
    for ax, ((benchmark, model), group) in zip(axes[0], sorted(groups.items())):
        compressed = [r for r in group if r["strategy"] != "none"]
        variants = sorted({r["variant"] for r in compressed}, key=natural)
        budgets = {r["budget"] for r in compressed}
        full = [r["accuracy"] for r in group if r["strategy"] == "none"]
        if len(budgets) == 1:
            means = [
                sum(r["accuracy"] for r in compressed if r["variant"] == v)
                / sum(1 for r in compressed if r["variant"] == v)
                for v in variants
            ]
            colours = [series_style(i)["color"] for i in range(len(variants))]
            ax.barh(range(len(variants)), means, color=colours)
            ax.set_yticks(range(len(variants)), variants, fontsize=8)
            ax.invert_yaxis()
            ax.set_xlabel(f"accuracy at {budgets.pop()} tokens")
            if full:
                ax.axvline(sum(full) / len(full), color="black", linestyle="--", label="all tokens")
                ax.legend(fontsize=8)
            ax.grid(alpha=0.3, axis="x")
        else:
            for i, variant in enumerate(variants):
                by_budget = defaultdict(list)
                for r in compressed:
                    if r["variant"] == variant:
                        by_budget[r["budget"]].append(r)
                points = sorted(
                    (
                        sum(x["visual_tokens_llm"] for x in rs) / len(rs),
                        sum(x["accuracy"] for x in rs) / len(rs),
                    )
                    for rs in by_budget.values()
                )
                ax.plot(*zip(*points), label=variant, **series_style(i))
            if full:
                ax.axhline(sum(full) / len(full), color="black", linestyle="--", label="all tokens")
            ax.set(xlabel="visual tokens seen by the LLM (mean)", ylabel="accuracy")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, ncol=2 if len(variants) > 10 else 1)
        ax.set_title(plot_title(benchmark, model, group))
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")  # the path may be a temporary name
    plt.close(fig)


def latest_parent(client, experiment_name: str | None):
    """The newest sweep parent run, in `experiment_name` or, when None, in every experiment."""
    if experiment_name is None:
        ids = [e.experiment_id for e in client.search_experiments()]
    else:
        experiment = client.get_experiment_by_name(experiment_name)
        ids = [experiment.experiment_id] if experiment else []
    if not ids:
        return None
    found = client.search_runs(
        ids,
        filter_string="tags.`vzexp.sweep` = 'parent'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0] if found else None


def cell_key(r: dict) -> tuple:
    """A cell of the paper's table: benchmark, model, strategy variant, tuned or not, budget."""
    variant = " ".join(w for w in r["variant"].split() if not w.startswith("model.projector="))
    budget = None if r["strategy"] == "none" else r["budget"]
    return (r["benchmark"], r["model"], variant, bool(r.get("tuned")), budget)


def with_missing_cells(client, experiment_name: str, rows: list[dict]) -> list[dict]:
    """The sweep's rows plus, for each cell of the table it has no run of, the newest run of the
    same experiment: a paper's table takes several sweeps (the full-token runs once per
    benchmark, the tuned projector), each its own parent, in any order."""
    have = {cell_key(r) for r in rows}
    ids = {r["run_id"] for r in rows}
    others = [r for r in job_rows(client, experiment_name, None) if r["run_id"] not in ids]
    borrowed = {}
    for r in others:  # newest first
        key = cell_key(r)
        if key not in have:
            borrowed.setdefault(key, r)
    return with_variants(rows + list(borrowed.values()))


def write_paper_report(client, rows: list[dict], names: list[str], out: Path, parent) -> str:
    from vzexp.published import load
    from vzexp.report import paper as report_paper
    from vzexp.report.efficiency import efficiency_markdown

    mats = report_paper.matrices(rows, [load(name) for name in names])
    parts = []
    for m in mats:
        parts += [report_paper.matrix_markdown(m), efficiency_markdown(m), ""]
    text = "\n".join([*parts, report_paper.LEGEND, ""])
    with atomic_path(out / "paper.md") as tmp:
        tmp.write_text(text)
    with atomic_path(out / "paper.csv") as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=report_paper.CSV_FIELDS)
        writer.writeheader()
        writer.writerows(report_paper.compare_csv(mats))
    with atomic_path(out / "paper_vs_tokens.png") as tmp:
        report_paper.plot(mats, tmp)
    if parent:
        for name in ("paper.md", "paper.csv", "paper_vs_tokens.png"):
            client.log_artifact(parent, str(out / name), artifact_path="report")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vzexp.report", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--experiment",
        default=None,
        help="MLflow experiment name (default: the parent's; without --parent: vzexp)",
    )
    parser.add_argument(
        "--parent",
        default=None,
        help="a sweep's parent run id, or 'latest': the newest sweep (of --experiment, else of "
        "every experiment)",
    )
    parser.add_argument("--uri", default=None, help="tracking URI (default: as vzexp runs)")
    parser.add_argument("--out", default="report", help="output directory")
    parser.add_argument(
        "--full-from",
        default=None,
        metavar="EXPERIMENT",
        help="take the all-tokens (compressor=none) reference from this experiment's runs "
        "when the report's own runs have none (e.g. an ablation sweep)",
    )
    parser.add_argument(
        "--metrics",
        default="",
        metavar="NAME,...",
        help="also tabulate these logged metrics per strategy and budget (and add them to "
        "report.csv), e.g. dialogue_turn_ms,dialogue_reencode_turn_ms",
    )
    parser.add_argument(
        "--published",
        action="append",
        metavar="NAME",
        help="print a published table (a shipped name, e.g. visionzip, or a .yaml path); "
        "no MLflow needed",
    )
    parser.add_argument(
        "--compare",
        action="append",
        metavar="NAME",
        help="lay the runs out as this paper's tables beside its published values (repeatable)",
    )
    parser.add_argument(
        "--plan",
        metavar="EXPERIMENT",
        help="list the jobs of a paper_* experiment and estimate their GPU hours",
    )
    parser.add_argument(
        "--root",
        default=None,
        help="with --plan: the benchmarks' root (paths.eval_root), to size each benchmark from its files",
    )
    args = parser.parse_args(argv)
    from vzexp.errors import VzexpError

    try:
        if args.published:
            from vzexp.published import load
            from vzexp.report.published_text import published_markdown

            print("\n".join(published_markdown(load(name)) for name in args.published))
            return 0
        if args.plan:
            from vzexp.report.plan import plan_text

            print(plan_text(args.plan, args.compare or ["visionzip"], args.root))
            return 0
        return report(args)
    except VzexpError as exc:
        print(f"vzexp.report: error: {exc}", file=sys.stderr)
        return 2


def report(args) -> int:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri(args.uri))
    parent = args.parent
    if parent:  # the parent's own experiment; latest: the newest sweep of any experiment
        run = latest_parent(client, args.experiment) if parent == "latest" else None
        if parent != "latest":
            run = client.get_run(parent)
        if run is None:
            where = f"experiment {args.experiment!r}" if args.experiment else "any experiment"
            print(f"vzexp.report: error: --parent=latest: no sweep in {where}", file=sys.stderr)
            return 2
        parent = run.info.run_id
        args.experiment = client.get_experiment(run.info.experiment_id).name
        print(
            f"vzexp.report: sweep {run.info.run_name!r} (parent run {parent}) "
            f"in experiment {args.experiment!r}",
            flush=True,
        )
    args.experiment = args.experiment or DEFAULT_EXPERIMENT
    reference = job_rows(client, args.full_from, None) if args.full_from else []
    rows = job_rows(client, args.experiment, parent)
    if args.compare and parent:
        rows = with_missing_cells(client, args.experiment, rows)
    rows = with_percentages(rows, reference)
    if not rows:
        print("vzexp.report: error: no finished runs with an accuracy to report", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.compare:
        print(write_paper_report(client, rows, args.compare, out, parent))
        print(f"wrote {out / 'paper.md'}, paper.csv, paper_vs_tokens.png ({len(rows)} runs)")
        return 0
    metrics = [name for name in args.metrics.split(",") if name]
    unknown = [name for name in metrics if not any(name in r["metrics"] for r in rows)]
    if unknown:
        logged = sorted({name for r in rows for name in r["metrics"]})
        print(
            f"vzexp.report: error: --metrics={','.join(unknown)} is not allowed: no run logged it; "
            f"the runs logged: {', '.join(logged)}",
            file=sys.stderr,
        )
        return 2
    table = markdown(rows, metrics)
    # each file whole or absent: a report killed mid-way never leaves a truncated table
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(table)
    with atomic_path(out / "report.csv") as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS + metrics, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rounded({**r, **{m: r["metrics"].get(m) for m in metrics}}) for r in rows)
    with atomic_path(out / "accuracy_vs_tokens.png") as tmp:
        plot(rows, tmp)
    if parent:
        for name in ("report.md", "report.csv", "accuracy_vs_tokens.png"):
            client.log_artifact(parent, str(out / name), artifact_path="report")
    print(table)
    print(f"wrote {out / 'report.md'}, report.csv, accuracy_vs_tokens.png ({len(rows)} runs)")
    return 0
