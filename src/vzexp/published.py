"""Published result tables as data: one YAML file per paper, with a source for every value.

`load("visionzip")` reads the file shipped in `vzexp/resources/published/`; `load(path)` reads a
user's own file of the same schema (the schema is described at the top of the shipped file).
Every entry is checked when loaded: a malformed one fails with one line naming the file and the
key. Plain YAML and dataclasses only, so printing a published table needs neither torch nor
MLflow."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vzexp.errors import VzexpError
from vzexp.paths import resource_dir


class PublishedError(VzexpError):
    """A published-results file that is missing or does not follow the schema."""


def published_dir() -> Path:
    return resource_dir() / "published"


def available() -> list[str]:
    """The names of the published tables shipped with vzexp."""
    return sorted(p.stem for p in published_dir().glob("*.yaml"))


@dataclass(frozen=True)
class Value:
    """One published number. `value` None: no stored source gives it (unconfirmed);
    `alternatives` non-empty: sources disagree (`value` is the one shown and compared)."""

    value: float | None
    source: str | None = None
    alternatives: tuple[tuple[float, str], ...] = ()
    note: str | None = None

    @property
    def status(self) -> str:
        if self.value is None:
            return "unconfirmed"
        return "disputed" if self.alternatives else "confirmed"

    @property
    def uncertain(self) -> bool:
        return self.status != "confirmed"

    def text(self, digits: int | None = None) -> str:
        """As the paper's tables print it: `u` when unconfirmed, `a/b` when sources disagree."""
        if self.value is None:
            return "u"
        shown = [self.value, *(v for v, _ in self.alternatives)]
        return "/".join(number(v, digits) for v in shown)


def number(x: float, digits: int | None = None) -> str:
    """A published figure as the paper prints it: one decimal below 100 (63.0, 27.8), as given
    from 100 up (1862, 1782.6); `digits` fixes the decimals."""
    if digits is not None:
        return f"{x:.{digits}f}"
    if abs(x) < 100:
        return f"{x:.1f}"
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class Benchmark:
    column: str
    data: str | None  # the vzexp `data=` name; None: vzexp has no such benchmark
    metrics: tuple[str, ...]  # the run metric keys the column reads, the first present wins
    scale: float  # run metric x scale = the paper's unit
    reads: str = ""


@dataclass(frozen=True)
class Method:
    key: str
    label: str
    compressor: str  # the vzexp `compressor=` name
    tuned: bool = False  # the paper's projector-tuned variant (a run with model.projector set)


@dataclass(frozen=True)
class Row:
    method: str
    budget: int
    cells: dict[str, Value]
    avg: Value | None = None
    note: str | None = None
    source: str | None = None  # the source of the cells that name none of their own


@dataclass(frozen=True)
class Table:
    id: str
    title: str
    model: str  # the vzexp `model=` name whose runs the table is compared with
    full_budget: int
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    tokens: dict[int, int] = field(default_factory=dict)  # paper budget -> vzexp `tokens`
    notes: tuple[str, ...] = ()

    def vzexp_tokens(self, budget: int) -> int:
        return self.tokens.get(budget, budget)

    def paper_budget(self, tokens: int) -> int:
        """The paper's budget label for a run's `tokens` (the inverse of `vzexp_tokens`)."""
        return {v: k for k, v in self.tokens.items()}.get(tokens, tokens)

    def row(self, method: str, budget: int) -> Row | None:
        return next((r for r in self.rows if r.method == method and r.budget == budget), None)


@dataclass(frozen=True)
class Timing:
    model: str
    method: str
    budget: int
    total_s: float
    prefill_ms: float
    tflops: float | None = None


@dataclass(frozen=True)
class Efficiency:
    id: str
    title: str
    benchmark: str
    paper: bool  # the paper's own measurement, or a third party's
    source: str
    rows: tuple[Timing, ...]
    note: str | None = None


@dataclass(frozen=True)
class Published:
    name: str
    path: Path
    paper: str
    title: str
    reference: str
    sources: dict[str, str]
    benchmarks: dict[str, Benchmark]
    methods: dict[str, Method]
    tables: tuple[Table, ...]
    efficiency: tuple[Efficiency, ...] = ()

    def table_for(self, model: str) -> Table | None:
        return next((t for t in self.tables if t.model == model), None)

    def method_for(self, compressor: str, tuned: bool) -> Method | None:
        return next(
            (m for m in self.methods.values() if m.compressor == compressor and m.tuned == tuned),
            None,
        )

    def full_method(self) -> Method | None:
        return self.method_for("none", False)


def resolve(name: str) -> Path:
    """A shipped table's name, or the path of a user's file."""
    shipped = published_dir() / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    path = Path(name).expanduser()
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    raise PublishedError(
        f"published table {name!r}: neither a shipped one ({', '.join(available())}) "
        "nor a .yaml file"
    )


def load(name: str) -> Published:
    path = resolve(name)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise PublishedError(f"{path}:{where} not valid YAML ({exc.__class__.__name__})") from None
    return _Reader(path).published(raw, path.stem)


class _Reader:
    """Builds the dataclasses from the parsed YAML, failing on the first malformed entry with
    `<file>: <key>: <what is wrong>`."""

    def __init__(self, path: Path):
        self.path = path
        self.sources: dict[str, str] = {}

    def fail(self, key: str, problem: str) -> PublishedError:
        return PublishedError(f"{self.path.name}: {key}: {problem}")

    def mapping(self, node: Any, key: str) -> dict:
        if not isinstance(node, dict):
            raise self.fail(key, f"expected a mapping, got {type(node).__name__}")
        return node

    def listing(self, node: Any, key: str) -> list:
        if not isinstance(node, list):
            raise self.fail(key, f"expected a list, got {type(node).__name__}")
        return node

    def required(self, node: dict, name: str, key: str, kind: type | tuple = str) -> Any:
        if name not in node:
            raise self.fail(f"{key}.{name}" if key else name, "missing")
        return self.typed(node[name], f"{key}.{name}" if key else name, kind)

    def typed(self, value: Any, key: str, kind: type | tuple) -> Any:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        numeric = any(k in (int, float) for k in kinds)
        if isinstance(value, bool) and bool not in kinds:
            ok = False
        else:
            ok = isinstance(value, kinds) or (numeric and isinstance(value, (int, float)))
        if not ok:
            names = " or ".join(k.__name__ for k in kinds)
            raise self.fail(key, f"expected {names}, got {value!r}")
        return value

    def source(self, value: Any, key: str) -> str | None:
        if value is None:
            return None
        text = str(self.typed(value, key, str))
        unknown = [s for s in text.split() if s not in self.sources]
        if unknown:
            raise self.fail(key, f"source {' '.join(unknown)} is not listed under `sources`")
        return text

    def published(self, raw: Any, name: str) -> Published:
        raw = self.mapping(raw, "top level")
        self.sources = {
            str(k): str(v) for k, v in self.mapping(raw.get("sources", {}), "sources").items()
        }
        benchmarks = {}
        for column, node in self.mapping(self.required(raw, "benchmarks", "", dict), "b").items():
            key = f"benchmarks.{column}"
            node = self.mapping(node, key)
            metric = self.required(node, "metric", key, (str, list))
            metrics = (metric,) if isinstance(metric, str) else tuple(map(str, metric))
            if not metrics:
                raise self.fail(f"{key}.metric", "expected at least one metric key")
            data = node.get("data")
            benchmarks[str(column)] = Benchmark(
                column=str(column),
                data=None if data is None else self.typed(data, f"{key}.data", str),
                metrics=metrics,
                scale=float(self.required(node, "scale", key, (int, float))),
                reads=str(node.get("reads", "")),
            )
        methods = {}
        for method, node in self.mapping(self.required(raw, "methods", "", dict), "m").items():
            key = f"methods.{method}"
            node = self.mapping(node, key)
            methods[str(method)] = Method(
                key=str(method),
                label=self.required(node, "label", key),
                compressor=self.required(node, "compressor", key),
                tuned=bool(self.typed(node.get("tuned", False), f"{key}.tuned", bool)),
            )
        tables = tuple(
            self.table(node, f"tables[{i}]", benchmarks, methods)
            for i, node in enumerate(self.listing(self.required(raw, "tables", "", list), "t"))
        )
        efficiency = tuple(
            self.efficiency(node, f"efficiency[{i}]", methods)
            for i, node in enumerate(self.listing(raw.get("efficiency", []), "efficiency"))
        )
        return Published(
            name=name,
            path=self.path,
            paper=self.required(raw, "paper", ""),
            title=str(raw.get("title", "")),
            reference=str(raw.get("reference", "")),
            sources=self.sources,
            benchmarks=benchmarks,
            methods=methods,
            tables=tables,
            efficiency=efficiency,
        )

    def table(self, node: Any, key: str, benchmarks: dict, methods: dict) -> Table:
        node = self.mapping(node, key)
        columns = tuple(self.listing(self.required(node, "columns", key, list), f"{key}.columns"))
        for column in columns:
            if column not in benchmarks:
                raise self.fail(f"{key}.columns", f"{column!r} is not listed under `benchmarks`")
        tokens = {
            int(self.typed(k, f"{key}.tokens", int)): int(self.typed(v, f"{key}.tokens.{k}", int))
            for k, v in self.mapping(node.get("tokens", {}), f"{key}.tokens").items()
        }
        rows = []
        for i, row in enumerate(self.listing(self.required(node, "rows", key, list), key)):
            rkey = f"{key}.rows[{i}]"
            row = self.mapping(row, rkey)
            method = self.required(row, "method", rkey)
            if method not in methods:
                raise self.fail(f"{rkey}.method", f"{method!r} is not listed under `methods`")
            default = self.source(row.get("source"), f"{rkey}.source")
            cells = {}
            for column, cell in self.mapping(self.required(row, "cells", rkey, dict), rkey).items():
                if column not in columns:
                    raise self.fail(f"{rkey}.cells.{column}", "not one of the table's columns")
                cells[column] = self.value(cell, f"{rkey}.cells.{column}", default)
            avg = row.get("avg")
            rows.append(
                Row(
                    method=method,
                    budget=int(self.required(row, "budget", rkey, int)),
                    cells=cells,
                    avg=None if avg is None else self.value(avg, f"{rkey}.avg", default),
                    note=row.get("note"),
                    source=default,
                )
            )
        return Table(
            id=self.required(node, "id", key),
            title=self.required(node, "title", key),
            model=self.required(node, "model", key),
            full_budget=int(self.required(node, "full_budget", key, int)),
            columns=columns,
            rows=tuple(rows),
            tokens=tokens,
            notes=tuple(map(str, node.get("notes", []))),
        )

    def value(self, cell: Any, key: str, default: str | None) -> Value:
        if cell is None:
            return Value(None)
        if not isinstance(cell, dict):
            number = self.typed(cell, key, (int, float))
            if default is None:
                raise self.fail(key, "a value needs a source (the cell's or the row's)")
            return Value(float(number), default)
        unknown = set(cell) - {"value", "source", "alt", "note"}
        if unknown:
            raise self.fail(key, f"unknown field(s) {', '.join(sorted(unknown))}")
        raw = cell.get("value")
        if raw is None:
            return Value(None, note=cell.get("note"))
        number = float(self.typed(raw, f"{key}.value", (int, float)))
        source = self.source(cell.get("source"), f"{key}.source") or default
        if source is None:
            raise self.fail(key, "a value needs a source (the cell's or the row's)")
        alternatives = []
        for j, alt in enumerate(self.listing(cell.get("alt", []), f"{key}.alt")):
            akey = f"{key}.alt[{j}]"
            alt = self.mapping(alt, akey)
            alternatives.append(
                (
                    float(self.required(alt, "value", akey, (int, float))),
                    self.source(self.required(alt, "source", akey), f"{akey}.source"),
                )
            )
        return Value(number, source, tuple(alternatives), cell.get("note"))

    def efficiency(self, node: Any, key: str, methods: dict) -> Efficiency:
        node = self.mapping(node, key)
        rows = []
        for i, row in enumerate(self.listing(self.required(node, "rows", key, list), key)):
            rkey = f"{key}.rows[{i}]"
            row = self.mapping(row, rkey)
            method = self.required(row, "method", rkey)
            if method not in methods:
                raise self.fail(f"{rkey}.method", f"{method!r} is not listed under `methods`")
            model = row.get("model", node.get("model"))
            if model is None:
                raise self.fail(f"{rkey}.model", "missing (on the row or its table)")
            tflops = row.get("tflops")
            rows.append(
                Timing(
                    model=str(model),
                    method=method,
                    budget=int(self.required(row, "budget", rkey, int)),
                    total_s=float(self.required(row, "total_s", rkey, (int, float))),
                    prefill_ms=float(self.required(row, "prefill_ms", rkey, (int, float))),
                    tflops=None if tflops is None else float(tflops),
                )
            )
        return Efficiency(
            id=self.required(node, "id", key),
            title=self.required(node, "title", key),
            benchmark=self.required(node, "benchmark", key),
            paper=bool(self.required(node, "paper", key, bool)),
            source=self.source(self.required(node, "source", key), f"{key}.source"),
            rows=tuple(rows),
            note=node.get("note"),
        )
