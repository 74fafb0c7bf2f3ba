"""A published table as Markdown (`python -m vzexp.report --published NAME`): the paper's rows,
then each value's sources and flags, the efficiency tables, which run metric each column reads,
and the list of sources."""

from __future__ import annotations

from vzexp.published import Published, number
from vzexp.report.paper import FULL, cell_text, header, speedup


def published_markdown(pub: Published) -> str:
    out = [f"# {pub.paper}: {pub.title} ({pub.reference})", f"file: {pub.path}", ""]
    for table in pub.tables:
        out += [f"## {table.title}: model={table.model}", ""]
        if table.tokens:
            per = ", ".join(f"{k} -> tokens={v}" for k, v in table.tokens.items())
            out += [f"vzexp `tokens` for the paper's budgets: {per}", ""]
        out += header(list(table.columns), ["Avg. %"])
        for row in table.rows:
            cells = [cell_text(row.cells.get(c)) for c in table.columns]
            avg = "100" if row.budget == table.full_budget else cell_text(row.avg)
            label = pub.methods[row.method].label
            out.append(f"| {row.budget} | {label} | " + " | ".join(cells) + f" | {avg} |")
        out += ["", "Sources and flags:"]
        for row in table.rows:
            label = f"{pub.methods[row.method].label} {row.budget}"
            if row.note:
                out.append(f"- {label}: {row.note}")
            for column, value in [*row.cells.items(), ("Avg. %", row.avg)]:
                if value is None:
                    continue
                if value.value is None:
                    out.append(f"- {label} {column}: unconfirmed (no stored source)")
                elif value.alternatives or value.note or value.source != row.source:
                    alts = "; ".join(f"{number(v)} [{s}]" for v, s in value.alternatives)
                    text = f"- {label} {column}: {number(value.value)} [{value.source}]"
                    text += f" vs {alts}" if alts else ""
                    text += f" ({value.note})" if value.note else ""
                    out.append(text)
            if row.source:
                out.append(f"- {label}: other cells [{row.source}]")
        out += [f"- {note}" for note in table.notes]
        out.append("")
    for e in pub.efficiency:
        out += [f"## {e.title} [{e.source}]", ""]
        out += [
            "| Model | Method | Budget | Total s | Speed-up | Prefill ms | Speed-up |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for t in e.rows:
            full = next(
                (
                    x
                    for x in e.rows
                    if x.model == t.model and pub.methods[x.method].compressor == FULL
                ),
                None,
            )
            out.append(
                f"| {t.model} | {pub.methods[t.method].label} | {t.budget} | {number(t.total_s)} | "
                f"{speedup(full and full.total_s, t.total_s)} | {number(t.prefill_ms)} | "
                f"{speedup(full and full.prefill_ms, t.prefill_ms)} |"
            )
        out += ([f"- {e.note}"] if e.note else []) + [""]
    out += ["Columns read from a run:"]
    for b in pub.benchmarks.values():
        keys = " or ".join(b.metrics)
        where = (
            f"data={b.data}, metric {keys} x {number(b.scale)}" if b.data else "no vzexp benchmark"
        )
        out.append(f"- {b.column}: {where} ({b.reads})")
    out += ["", "Sources:"] + [f"- [{k}] {v}" for k, v in pub.sources.items()]
    out += [
        "",
        "u = no stored source gives the value; a/b = sources disagree (the first is compared).",
        "",
    ]
    return "\n".join(out)
