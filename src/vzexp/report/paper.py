"""The paper-shaped report: a sweep's runs laid out as a paper's table, beside its published values.

Pure functions over the job rows `vzexp.report` reads from MLflow and the tables of
`vzexp.published`; no MLflow here. For each model: a matrix with rows = method x budget and
columns = benchmarks + Avg. % (each benchmark's score as a percentage of the full-token run of
the same model, averaged over the benchmarks the row has), then the same cells as published and
the difference (the efficiency block: vzexp.report.efficiency). A run whose strategy (or variant) the published table does
not have is one more row, absent from the published and difference blocks."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from vzexp.published import Benchmark, Published, Table, Value

# Columns for benchmarks no published file describes: the run's accuracy, in percent.
FALLBACK_METRICS = ("accuracy",)
FALLBACK_SCALE = 100.0
FULL = "none"
LEGEND = (
    "Scores in the paper's units (MME: perception score; the rest: percent). "
    "Avg. %: each benchmark's score as a percentage of the same model's full-token score, "
    "averaged over the benchmarks the row has. Published: u = no stored source gives the value; "
    "a/b = sources disagree (the first is compared); * = the difference or average rests on an "
    "uncertain published value; the paper's own Avg. % is over its benchmark set."
)


@dataclass
class Line:
    """One row of the matrix: a method (or a user's strategy/variant) at one budget."""

    label: str
    budget: int  # the paper's budget label (LLaVA-NeXT: the total over the views)
    order: tuple
    method: str | None = None  # the published method key, when a published table has it
    full: bool = False
    # the published file and table the row is compared with (the first --compare that has it)
    source: tuple[Published, Table] | None = None
    scores: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    runs: list[dict] = field(default_factory=list)

    def score(self, benchmark: str) -> float | None:
        values = self.scores.get(benchmark)
        return sum(values) / len(values) if values else None


@dataclass
class Matrix:
    model: str
    table: Table | None  # the published table of this model, if any
    published: Published | None
    columns: list[str]  # benchmark columns, in the paper's order, then any others
    lines: list[Line]

    @property
    def full(self) -> Line | None:
        return next((line for line in self.lines if line.full), None)

    def avg(self, line: Line) -> float | None:
        """Mean over the row's benchmarks of 100 x score / full-token score."""
        full = self.full
        if full is None:
            return None
        ratios = [
            100 * line.score(c) / full.score(c)
            for c in self.columns
            if line.score(c) is not None and full.score(c)
        ]
        return sum(ratios) / len(ratios) if ratios else None

    def published_row(self, line: Line):
        if line.source is None or line.method is None:
            return None
        return line.source[1].row(line.method, line.budget)

    def published_full_row(self, line: Line):
        if line.source is None:
            return None
        pub, table = line.source
        full = pub.full_method()
        return table.row(full.key, table.full_budget) if full else None

    def published_avg(self, line: Line) -> tuple[float | None, bool]:
        """The published cells' Avg. % over the same columns (against the full-token row of the
        same published table), and whether it rests on an uncertain or missing published value."""
        row, full = self.published_row(line), self.published_full_row(line)
        if row is None or full is None:
            return None, False
        ratios, uncertain = [], False
        for c in self.columns:
            if line.score(c) is None:
                continue
            mine, base = row.cells.get(c), full.cells.get(c)
            if mine is None or base is None or mine.value is None or base.value is None:
                uncertain = True
                continue
            uncertain |= mine.uncertain or base.uncertain
            ratios.append(100 * mine.value / base.value)
        return (sum(ratios) / len(ratios) if ratios else None), uncertain


def benchmark_of(published: list[Published], data: str) -> Benchmark | None:
    for pub in published:
        for b in pub.benchmarks.values():
            if b.data == data:
                return b
    return None


def run_score(row: dict, bench: Benchmark | None) -> float | None:
    metrics = row["metrics"]
    keys, scale = (bench.metrics, bench.scale) if bench else (FALLBACK_METRICS, FALLBACK_SCALE)
    key = next((k for k in keys if k in metrics), None)
    return None if key is None else metrics[key] * scale


def matrices(rows: list[dict], published: list[Published]) -> list[Matrix]:
    """Group the job rows by model into matrices, each matched to its published table."""
    by_model = defaultdict(list)
    for r in rows:
        by_model[r["model"]].append(r)
    out = []
    for model, runs in sorted(by_model.items()):
        candidates = [(p, t) for p in published if (t := p.table_for(model)) is not None]
        pub, table = candidates[0] if candidates else (None, None)
        columns = {}
        lines: dict[tuple, Line] = {}
        for r in runs:
            bench = benchmark_of(published, r["benchmark"])
            column = bench.column if bench else r["benchmark"]
            score = run_score(r, bench)
            if score is None:
                continue
            columns[column] = True
            line = lines.setdefault(line_key(r), new_line(r, candidates))
            line.scores[column].append(score)
            line.runs.append(r)
        paper_order = list(table.columns) if table else []
        ordered = [c for c in paper_order if c in columns]
        ordered += sorted(c for c in columns if c not in paper_order)
        out.append(
            Matrix(model, table, pub, ordered, sorted(lines.values(), key=lambda x: x.order))
        )
    return out


def variant(r: dict) -> str:
    """The run's strategy and the overrides that set it apart, less the tuned projector's path
    (a row of its own through `tuned`, whatever the path)."""
    return " ".join(w for w in r["variant"].split() if not w.startswith("model.projector="))


def line_key(r: dict) -> tuple:
    full = r["strategy"] == FULL and variant(r) == FULL
    return (full, variant(r), bool(r.get("tuned")), None if full else r["budget"])


def new_line(r: dict, candidates: list[tuple[Published, Table]]) -> Line:
    """The row of a run: its published method and table (the first file that has the method at
    this budget, else the first that has the method), its label, budget and place in the order."""
    full = r["strategy"] == FULL and variant(r) == FULL
    primary = candidates[0] if candidates else None
    source, key = None, None
    if full and primary and (method := primary[0].full_method()):
        source, key = primary, method.key
    elif not full and variant(r) == r["strategy"]:
        tuned = bool(r.get("tuned"))
        found = [
            ((p, t), m.key)
            for p, t in candidates
            if (m := p.method_for(r["strategy"], tuned)) is not None
        ]
        exact = [(c, k) for c, k in found if c[1].row(k, c[1].paper_budget(r["budget"]))]
        source, key = (exact or found or [(None, None)])[0]
    table = primary[1] if primary else None
    if full:
        budget = table.full_budget if table else int(r["visual_tokens"] or 0)
    else:
        budget = table.paper_budget(r["budget"]) if table else r["budget"]
    if key:
        label = source[0].methods[key].label
    else:
        label = variant(r) + (" (tuned projector)" if r.get("tuned") else "")
    methods = [k for p, _ in candidates for k in p.methods]
    rank = methods.index(key) if key in methods else len(methods)
    return Line(label, budget, (not full, -budget, rank, label), key, full, source=source)


def fmt(x: float | None, digits: int = 1) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def signed(x: float) -> str:
    text = f"{x:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def header(columns: list[str], extra: list[str]) -> list[str]:
    names = ["Budget", "Method", *columns, *extra]
    aligns = ["---:", "---", *("---:" for _ in columns), *("---:" for _ in extra)]
    return ["| " + " | ".join(names) + " |", "|" + "|".join(aligns) + "|"]


def matrix_markdown(m: Matrix) -> str:
    title = m.table.title if m.table else m.model
    out = [f"## {title}: model={m.model}", "", "### This sweep", ""]
    out += header(m.columns, ["Avg. %"])
    for line in m.lines:
        cells = [fmt(line.score(c)) for c in m.columns]
        out.append(
            f"| {line.budget} | {line.label} | " + " | ".join(cells) + f" | {fmt(m.avg(line))} |"
        )
    compared = [line for line in m.lines if m.published_row(line) is not None]
    if compared:
        papers = dict.fromkeys(
            f"{line.source[0].paper}, {line.source[0].reference}" for line in compared
        )
        out += ["", f"### Published ({'; '.join(papers)})", ""]
        out += header(m.columns, ["Avg. %", "Paper's Avg. %"])
        for line in compared:
            row = m.published_row(line)
            cells = [
                cell_text(row.cells.get(c)) if line.score(c) is not None else "" for c in m.columns
            ]
            avg, uncertain = m.published_avg(line)
            paper_avg = "100" if line.full else cell_text(row.avg)
            out.append(
                f"| {line.budget} | {line.label} | "
                + " | ".join(cells)
                + f" | {fmt(avg)}{'*' if uncertain and avg is not None else ''} | {paper_avg} |"
            )
        out += ["", "### Difference (this sweep - published)", ""]
        out += header(m.columns, ["Avg. %"])
        for line in compared:
            row = m.published_row(line)
            cells = [difference(line.score(c), row.cells.get(c)) for c in m.columns]
            mine, (theirs, uncertain) = m.avg(line), m.published_avg(line)
            avg = (
                signed(mine - theirs) + ("*" if uncertain else "")
                if mine is not None and theirs is not None
                else ""
            )
            out.append(f"| {line.budget} | {line.label} | " + " | ".join(cells) + f" | {avg} |")
    return "\n".join(out)


def cell_text(value: Value | None) -> str:
    return "" if value is None else value.text()


def difference(mine: float | None, published: Value | None) -> str:
    if mine is None or published is None:
        return ""
    if published.value is None:
        return "u"
    return signed(mine - published.value) + ("*" if published.uncertain else "")


def speedup(full: float | None, this: float | None) -> str:
    return f"{full / this:.1f}x" if full and this else ""


CSV_FIELDS = [
    "model",
    "method",
    "budget",
    "benchmark",
    "value",
    "published",
    "published_status",
    "published_source",
    "difference",
    "runs",
]


def compare_csv(mats: list[Matrix]) -> list[dict]:
    """One row per matrix cell (and per row's Avg. %), beside its published value."""
    out = []
    for m in mats:
        for line in m.lines:
            row = m.published_row(line)
            for c in m.columns:
                mine = line.score(c)
                if mine is None:
                    continue
                value = row.cells.get(c) if row else None
                out.append(
                    {
                        "model": m.model,
                        "method": line.label,
                        "budget": line.budget,
                        "benchmark": c,
                        "value": round(mine, 4),
                        "published": "" if value is None else value.text(),
                        "published_status": "" if value is None else value.status,
                        "published_source": "" if value is None else value.source or "",
                        "difference": ""
                        if value is None or value.value is None
                        else round(mine - value.value, 4),
                        "runs": len(line.scores[c]),
                    }
                )
            avg = m.avg(line)
            theirs, uncertain = m.published_avg(line)
            out.append(
                {
                    "model": m.model,
                    "method": line.label,
                    "budget": line.budget,
                    "benchmark": "Avg. %",
                    "value": "" if avg is None else round(avg, 4),
                    "published": "" if theirs is None else round(theirs, 4),
                    "published_status": "uncertain" if uncertain else "",
                    "published_source": "",
                    "difference": "" if avg is None or theirs is None else round(avg - theirs, 4),
                    "runs": len(line.runs),
                }
            )
    return out


def plot(mats: list[Matrix], path) -> None:
    """Score against the paper's budget, one panel per model and benchmark, this sweep's lines
    solid and the published ones dashed in the same colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(m, c) for m in mats for c in m.columns]
    cols = min(len(panels), 5) or 1
    nrows = -(-len(panels) // cols) or 1
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (m, column) in zip(axes.flat, panels):
        colours = {}
        for line in m.lines:
            if line.full or line.score(column) is None:
                continue
            colours.setdefault(line.label, f"C{len(colours) % 10}")
        for label, colour in colours.items():
            mine = sorted(
                (x.budget, x.score(column))
                for x in m.lines
                if x.label == label and x.score(column) is not None
            )
            ax.plot(*zip(*mine), marker="o", color=colour, label=label)
            theirs = sorted(
                (x.budget, v.value)
                for x in m.lines
                if x.label == label
                and (row := m.published_row(x)) is not None
                and (v := row.cells.get(column)) is not None
                and v.value is not None
            )
            if theirs:
                ax.plot(*zip(*theirs), marker="s", mfc="none", ls="--", color=colour)
        full = m.full
        if full is not None and full.score(column) is not None:
            ax.axhline(full.score(column), color="black", ls=":", label="all tokens")
        ax.set(title=f"{column} / {m.model}", xlabel="visual tokens (paper's budget)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("solid: this sweep; dashed: published", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
