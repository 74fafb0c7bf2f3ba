"""`python -m vzexp.report --plan paper_llava15`: the jobs a paper experiment's table needs, and
their GPU hours estimated from the published total times.

The jobs are the experiment's sweep (its `hydra.sweeper.params`, expanded as Hydra does) plus the
full-token run once per benchmark (the second sweep of the experiment's header). A job's time is
the published total time on the efficiency table's benchmark (POPE) for its model, method and
budget: the paper's own measurement first, a third party's next; a job with none is bounded by the
full-token time of its model. With --root (the experiment's paths.eval_root) each benchmark is
scaled by its number of rows against POPE's, counted in its parquet files (tables of images alone
are left out); without it every benchmark counts as POPE-sized."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from vzexp.errors import VzexpError
from vzexp.published import Published, Table, Timing, load


@dataclass
class Job:
    overrides: dict[str, str]
    seconds: float | None = None
    basis: str = ""


def sweep_jobs(experiment: str) -> tuple[str, list[dict[str, str]]]:
    """The model name and the job overrides of +experiment=NAME, expanded as Hydra expands them."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from vzexp.paths import config_dir

    if not (config_dir() / "experiment" / f"{experiment}.yaml").is_file():
        raise VzexpError(f"--plan {experiment}: no conf/experiment/{experiment}.yaml")
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={experiment}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params or {}
    parser = OverridesParser.create()
    axes = []
    for key, value in params.items():
        (override,) = parser.parse_overrides([f"{key}={value}"])
        values = (
            list(override.sweep_string_iterator()) if override.is_sweep_override() else [str(value)]
        )
        axes.append([(key, v) for v in values])
    jobs = [dict(combo) for combo in itertools.product(*axes)]
    if "compressor" in params and not any(j.get("compressor") == "none" for j in jobs):
        benchmarks = dict.fromkeys(j.get("data", cfg.data.name) for j in jobs)
        jobs += [{"data": b, "compressor": "none"} for b in benchmarks]
    return str(cfg.model.name), jobs


def rows_in(folder: Path) -> int | None:
    """Rows of the parquet files under a benchmark's folder, image-only tables left out."""
    import pyarrow.parquet as pq

    files = [p for p in folder.rglob("*.parquet") if "image" not in str(p.relative_to(folder))]
    return sum(pq.ParquetFile(p).metadata.num_rows for p in files) if files else None


def timing_for(pubs: list[Published], model: str, method: str, budget: int) -> tuple[Timing, str]:
    found = [
        (not e.paper, t, e)
        for pub in pubs
        for e in pub.efficiency
        for t in e.rows
        if (t.model, t.method, t.budget) == (model, method, budget)
    ]
    if not found:
        return None, ""
    _, t, e = min(found, key=lambda x: x[0])
    return t, f"{'paper' if e.paper else 'third party'} [{e.source}]"


def benchmark_folder(name: str, eval_root: str) -> Path | None:
    """The folder benchmark `name` reads under paths.eval_root, as its data config's `root`
    names it (e.g. MME/ for data=mme)."""
    from omegaconf import OmegaConf

    from vzexp.config import register_configs
    from vzexp.paths import config_dir

    path = config_dir() / "data" / f"{name}.yaml"
    if not path.is_file():
        return None
    register_configs()
    node = OmegaConf.create({"paths": {"eval_root": eval_root}, "data": OmegaConf.load(path)})
    root = OmegaConf.select(node, "data.root", default=None)
    return Path(root) if root else None


def estimate(experiment: str, names: list[str], root: str | None) -> tuple[str, list[Job], str]:
    model, overrides = sweep_jobs(experiment)
    pubs = [load(n) for n in names]
    table: Table | None = next((t for p in pubs if (t := p.table_for(model))), None)
    full_method = next((m.key for p in pubs if (m := p.full_method())), None)
    sizes: dict[str, int | None] = {}
    pope = None
    if root:
        for name in {o.get("data") for o in overrides} | {"pope"}:
            folder = benchmark_folder(str(name), str(Path(root).expanduser()))
            sizes[name] = rows_in(folder) if folder and folder.is_dir() else None
        pope = sizes.get("pope")
    jobs = []
    for o in overrides:
        job = Job(o)
        jobs.append(job)
        if table is None:
            job.basis = "no published table for this model"
            continue
        pub = next(p for p in pubs if table in p.tables)
        full = o.get("compressor") == "none"
        method = pub.method_for(o.get("compressor", ""), False)
        budget = table.full_budget if full else table.paper_budget(int(o.get("tokens", 0)))
        t, basis = timing_for(pubs, model, method.key, budget) if method else (None, "")
        if t is None:
            t, basis = timing_for(pubs, model, full_method, table.full_budget)
            basis = f"at most the full-token time, {basis}" if t else ""
        if t is None:
            job.basis = "no published time"
            continue
        scale = 1.0
        size = sizes.get(o.get("data"))
        if size and pope:
            scale = size / pope
            basis += f", x{scale:.2f} POPE's rows"
        job.seconds, job.basis = t.total_s * scale, basis
    return model, jobs, (table.title if table else model)


def plan_text(experiment: str, names: list[str], root: str | None = None) -> str:
    model, jobs, title = estimate(experiment, names, root)
    keys = list(dict.fromkeys(k for j in jobs for k in j.overrides))
    out = [
        f"# +experiment={experiment}: {len(jobs)} jobs for {title}",
        "",
        "| # | " + " | ".join(keys) + " | est. GPU s | basis |",
        "|---:|" + "---|" * len(keys) + "---:|---|",
    ]
    for i, job in enumerate(jobs):
        cells = [job.overrides.get(k, "") for k in keys]
        secs = "" if job.seconds is None else f"{job.seconds:.0f}"
        out.append(f"| {i} | " + " | ".join(cells) + f" | {secs} | {job.basis} |")
    known = [j.seconds for j in jobs if j.seconds is not None]
    hours = sum(known) / 3600
    unknown = len(jobs) - len(known)
    out += [
        "",
        f"Estimated: {hours:.1f} GPU hours for {len(known)} jobs"
        + (f" ({unknown} without a published time)" if unknown else "")
        + ", from published total times on POPE (one A800-80GB)"
        + ("." if root else "; every benchmark counted as POPE-sized (--root scales by rows)."),
        f"Run: python -m vzexp +experiment={experiment} paths.eval_root=... model.path=... "
        "(then compressor=none for the full-token jobs; see the experiment file's header).",
    ]
    return "\n".join(out)
