"""Writes docs/configuration.md, the configuration reference, from the config tree and the schemas.

    python docs/gen_reference.py           # regenerate docs/configuration.md
    python docs/gen_reference.py --check   # exit 1 when the committed page differs

Sources, read as text (nothing is imported, so the page builds without torch):
- `conf/<group>/<option>.yaml`: each option's first comment line, its keys with their values and
  the comment beside or above each key;
- the schema dataclasses: `src/vzexp/config.py` for the shared groups, and for `task` and
  `train_data` the class each option names with `_target_` (fields, types, defaults, comments).
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
SRC = ROOT / "src"
PAGE = ROOT / "docs" / "configuration.md"

# (group, schema class in src/vzexp/config.py or None, what the group chooses)
GROUPS = [
    ("encoder", "EncoderConfig", "the vision tower of an assembled model"),
    ("llm", "LLMConfig", "the language model of an assembled model"),
    ("model", "ModelConfig", "a whole checkpoint, or an assembly of `encoder` + `llm`"),
    ("compressor", None, "the token-compression strategy; its keys are its class's parameters"),
    ("data", "DataConfig", "the benchmark evaluated"),
    ("task", None, "what the run does; each option's schema is the class its `_target_` names"),
    ("train_data", None, "training data of `task=tune`; schema: the class its `_target_` names"),
    ("trainer", "TrainerConfig", "devices and precision, passed to Lightning"),
    ("logger", "LoggerConfig", "where runs are tracked"),
    ("experiment", None, "studies as diffs over the defaults: `+experiment=NAME`"),
    ("hydra/launcher", None, "where the jobs of a sweep run: `hydra/launcher=NAME`"),
    ("hydra/sweeper", None, "how a sweep picks its jobs: `hydra/sweeper=NAME`"),
]
SCHEMA_GROUPS = {"task", "train_data"}


@dataclass
class Field:
    name: str
    type: str
    default: str
    comment: str


# --------------------------------------------------------------------------- schemas (ast)


def _comment_above(lines: list[str], lineno: int) -> list[str]:
    """The block of `#` lines directly above line `lineno` (1-based)."""
    out: list[str] = []
    i = lineno - 2
    while i >= 0 and lines[i].strip().startswith("#"):
        out.insert(0, lines[i].strip().lstrip("#").strip())
        i -= 1
    return out


def _inline_comment(line: str) -> str:
    match = re.search(r"\s#\s?(.*)$", line)
    return match.group(1).strip() if match else ""


def _default_text(node: ast.expr | None, source: str) -> str:
    if node is None:
        return "required"
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "field":
        for kw in node.keywords:
            if kw.arg == "default_factory":
                return {"dict": "{}", "list": "[]"}.get(getattr(kw.value, "id", ""), "...")
            if kw.arg == "default":
                return ast.get_source_segment(source, kw.value) or ""
    text = ast.get_source_segment(source, node) or ""
    try:  # literals as they are written in YAML and on the command line
        return show(ast.literal_eval(node))
    except ValueError:
        # an enum member shows as its value
        return re.sub(r"^[A-Z]\w*\.(\w+)$", r"\1", text)


def _module_file(module: str) -> Path:
    path = SRC / Path(*module.split("."))
    if path.with_suffix(".py").exists():
        return path.with_suffix(".py")
    if (path / "__init__.py").exists():
        return path / "__init__.py"
    raise SystemExit(f"gen_reference: no source for module {module} under {SRC}")


def schema_fields(module: str, name: str) -> list[Field]:
    """Dataclass fields of class `name` in `module`, base classes' first (followed through the
    module's `from x import Base`)."""
    path = _module_file(module)
    source = path.read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    imports = {
        alias.asname or alias.name: node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    cls = next(
        (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name),
        None,
    )
    if cls is None:
        raise SystemExit(f"gen_reference: no class {name} in {path.relative_to(ROOT)}")
    fields: dict[str, Field] = {}
    for base in cls.bases:
        base_name = getattr(base, "id", None)
        if base_name in imports and imports[base_name].startswith("vzexp"):
            fields.update({f.name: f for f in schema_fields(imports[base_name], base_name)})
        elif any(isinstance(n, ast.ClassDef) and n.name == base_name for n in tree.body):
            fields.update({f.name: f for f in schema_fields(module, base_name)})
    for stmt in cls.body:
        if not isinstance(stmt, ast.AnnAssign) or not isinstance(stmt.target, ast.Name):
            continue
        if stmt.target.id.startswith("_"):
            continue
        comment = " ".join(
            _comment_above(lines, stmt.lineno) + [_inline_comment(lines[stmt.end_lineno - 1])]
        ).strip()
        fields[stmt.target.id] = Field(
            stmt.target.id,
            (ast.get_source_segment(source, stmt.annotation) or "").replace("'", ""),
            _default_text(stmt.value, source),
            comment or (fields[stmt.target.id].comment if stmt.target.id in fields else ""),
        )
    return list(fields.values())


# --------------------------------------------------------------------------- options (yaml)


def header_comment(text: str) -> list[str]:
    """The file's leading comment lines, without Hydra's `# @package` directive."""
    out = []
    for line in text.splitlines():
        if not line.strip().startswith("#"):
            break
        body = line.strip().lstrip("#").strip()
        if not body.startswith("@package"):
            out.append(body)
    return out


def key_comments(text: str) -> dict[str, str]:
    """dotted key -> the comment beside it, or the block directly above it (after the header)."""
    lines = text.splitlines()
    n_header = 0
    while n_header < len(lines) and lines[n_header].strip().startswith("#"):
        n_header += 1
    stack: list[tuple[int, str]] = []
    out: dict[str, str] = {}
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z_][\w/@-]*)\s*:(.*)$", line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        dotted = ".".join(k for _, k in stack)
        above = _comment_above(lines, i + 1) if i > n_header else []
        # a key's block above stops at the header, and a key's own inline comment comes last
        out[dotted] = " ".join(above + [_inline_comment(match.group(3))]).strip()
    return out


def flatten(node, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(node, dict) and node:
        rows = []
        for key, value in node.items():
            rows += flatten(value, f"{prefix}{key}.")
        return rows
    return [(prefix.rstrip("."), node)]


def show(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return str(value)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def code(text: str) -> str:
    text = cell(text)
    return f"`` {text} ``" if "`" in text else f"`{text}`"


# --------------------------------------------------------------------------- page


def schema_table(fields: list[Field]) -> list[str]:
    out = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for f in fields:
        out.append(f"| `{f.name}` | {code(f.type)} | {code(f.default)} | {cell(f.comment)} |")
    return out


def option_section(group: str, path: Path) -> list[str]:
    text = path.read_text()
    name = path.stem
    header = header_comment(text)
    data = yaml.safe_load(text) or {}
    out = [f"### `{group}={name}`", ""]
    if header:
        out += [header[0], ""]
    command = next((line for line in header if line.startswith("python -m vzexp")), None)
    if group == "experiment" and command:
        out += [f"    {command}", ""]
    comments = key_comments(text)
    target = data.get("_target_") if isinstance(data, dict) else None
    if group in SCHEMA_GROUPS and target:
        module, cls = target.rsplit(".", 1)
        out += [f"Schema: `{target}`.", ""]
        out += schema_table(schema_fields(module, cls))
        return out + [""]
    rows = [(k, v) for k, v in flatten(data) if k]
    if group == "experiment":
        # an experiment's reasons and results are in its experiments/<name>/README.md
        comments = {}
    if rows:
        out += ["| key | value | note |", "|---|---|---|"]
        out += [f"| `{k}` | {code(show(v))} | {cell(comments.get(k, ''))} |" for k, v in rows]
    return out + [""]


def build() -> str:
    root = CONF / "config.yaml"
    root_text = root.read_text()
    root_data = yaml.safe_load(root_text)
    lines = [
        "# Configuration reference",
        "",
        "<!-- generated by docs/gen_reference.py from conf/ and the schemas; do not edit -->",
        "",
        "`python -m vzexp` composes `conf/config.yaml`: one option per group (`group=option`), then",
        "any key (`group.key=value`). Every composed config is checked against the schemas below",
        "before a model loads; a wrong key, type or value stops the run with one line.",
        "",
        "- `python -m vzexp --cfg job [overrides]` prints the composed config;",
        "  `python -m vzexp.list [group]` lists the options with their first comment line.",
        "- Your own options: put `conf/<group>/<name>.yaml` files in a directory and add it with",
        "  `hydra.searchpath=[file:///my/conf]`; they are chosen like the shipped ones.",
        "- Values written `${...}` are interpolations resolved at run time: `${tokens}` is the",
        "  top-level budget, `${vzexp_resource:NAME}` a directory shipped in the package,",
        "  `${vzexp_trained:NAME}` what a recipe published on this machine, and",
        "  `${vzexp_pretrained:NAME}` a part converted once from its PyPI package.",
        "",
        "## Defaults and top-level keys",
        "",
        "| group | default option |",
        "|---|---|",
    ]
    for entry in root_data["defaults"]:
        if isinstance(entry, dict):
            ((group, option),) = entry.items()
            lines.append(f"| `{group}` | `{show(option)}` |")
    # top-level keys: the schema's types, conf/config.yaml's values and comments
    root_comments = key_comments(root_text)
    top = [
        Field(f.name, f.type, show(root_data[f.name]), root_comments.get(f.name) or f.comment)
        for f in schema_fields("vzexp.config", "VzexpConfig")
        if f.name in root_data
    ]
    lines += ["", *schema_table(top), ""]
    for group, schema, what in GROUPS:
        folder = CONF / group
        options = sorted(folder.glob("*.yaml"))
        lines += [
            f"## `{group}`",
            "",
            f"Chooses {what}. Options: " + ", ".join(f"`{p.stem}`" for p in options) + ".",
            "",
        ]
        if schema:
            lines += [
                f"Schema: `vzexp.config.{schema}`.",
                "",
                *schema_table(schema_fields("vzexp.config", schema)),
                "",
            ]
        for path in options:
            lines += option_section(group, path)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    page = build()
    if "--check" in argv:
        if not PAGE.exists() or PAGE.read_text() != page:
            print(f"{PAGE.relative_to(ROOT)} is out of date: run python docs/gen_reference.py")
            return 1
        return 0
    PAGE.write_text(page)
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
