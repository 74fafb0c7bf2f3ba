"""The efficiency block of the paper-shaped report: prefill time, total time and speed-up against
the full-token run, beside the published timings (the paper's own first, a third party's next)."""

from __future__ import annotations

from vzexp.published import Timing, number
from vzexp.report.paper import Line, Matrix, benchmark_of, fmt, speedup


def efficiency_benchmark(m: Matrix) -> str | None:
    """The column the efficiency block reads: the published efficiency table's benchmark when
    this sweep has it, else the first benchmark of the matrix."""
    wanted = [e.benchmark for e in (m.published.efficiency if m.published else ())]
    for column in [*wanted, *m.columns]:
        if any(column in line.scores for line in m.lines):
            return column
    return None


def timing(m: Matrix, line: Line, column: str) -> tuple[Timing, str, bool] | None:
    """The published timing of this line on `column`, from the file it is compared with: the
    paper's own first, then a third party's; with its source and whether it is the paper's."""
    if line.source is None or line.method is None:
        return None
    found = []
    for e in line.source[0].efficiency:
        if e.benchmark != column:
            continue
        for t in e.rows:
            if (t.model, t.method, t.budget) == (m.model, line.method, line.budget):
                found.append((not e.paper, t, e.source))
    if not found:
        return None
    third_party, t, source = min(found, key=lambda x: x[0])
    return t, source, not third_party


def mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def efficiency_markdown(m: Matrix) -> str:
    column = efficiency_benchmark(m)
    if column is None:
        return ""
    full = m.full
    rows = []
    for line in m.lines:
        runs = [r for r in line.runs if column_of(r, m) == column]
        if runs:
            rows.append((line, runs))
    if not rows:
        return ""
    base = {}
    if full is not None:
        runs = [r for r in full.runs if column_of(r, m) == column]
        base = {
            "prefill": mean([r["prefill_ms_per_sample"] for r in runs]),
            "total": mean([r["duration_s"] for r in runs]),
        }
        published_full = timing(m, full, column)
        if published_full:
            base["pub_prefill"], base["pub_total"] = (
                published_full[0].prefill_ms,
                published_full[0].total_s,
            )
    out = [
        "",
        f"### Efficiency ({column})",
        "",
        "| Budget | Method | Visual tokens (LLM) | Prefill ms | Speed-up | Total s | Speed-up "
        "| Published prefill ms | Speed-up | Published total s | Speed-up |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for line, runs in rows:
        prefill = mean([r["prefill_ms_per_sample"] for r in runs])
        total = mean([r["duration_s"] for r in runs])
        tokens = mean([r["visual_tokens_llm"] for r in runs])
        found = timing(m, line, column)
        pub_prefill = pub_total = ""
        pub_prefill_x = pub_total_x = ""
        if found:
            t, source, paper = found
            tag = "" if paper else f" [{source}]"
            pub_prefill, pub_total = number(t.prefill_ms) + tag, number(t.total_s) + tag
            pub_prefill_x = speedup(base.get("pub_prefill"), t.prefill_ms)
            pub_total_x = speedup(base.get("pub_total"), t.total_s)
        out.append(
            f"| {line.budget} | {line.label} | {fmt(tokens, 0)} | {fmt(prefill)} | "
            f"{speedup(base.get('prefill'), prefill)} | {fmt(total, 0)} | "
            f"{speedup(base.get('total'), total)} | {pub_prefill} | {pub_prefill_x} | "
            f"{pub_total} | {pub_total_x} |"
        )
    out += [
        "",
        "Prefill: time to the first token per sample; total: the run's wall-clock time (model "
        "loading included); speed-up: the full-token run's time over this row's.",
    ]
    return "\n".join(out)


def column_of(r: dict, m: Matrix) -> str:
    bench = benchmark_of([m.published] if m.published else [], r["benchmark"])
    return bench.column if bench else r["benchmark"]
