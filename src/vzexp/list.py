"""`python -m vzexp.list [group ...]`: every option of every config group, with a one-line
description (the first comment line of its YAML)."""

from __future__ import annotations

import sys

from vzexp.paths import config_dir

GROUPS = (
    "compressor",
    "model",
    "encoder",
    "llm",
    "data",
    "task",
    "trainer",
    "logger",
    "experiment",
)


def describe(path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# @package"):  # Hydra's directive, not a description
            continue
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


def listing(groups=GROUPS) -> str:
    lines = []
    for group in groups:
        files = sorted((config_dir() / group).glob("*.yaml"))
        if not files:
            continue
        lines.append(f"{group}:")
        width = max(len(f.stem) for f in files)
        lines += [f"  {f.stem:{width}}  {describe(f)}" for f in files]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    unknown = [a for a in args if a not in GROUPS]
    if unknown:
        print(
            f"vzexp.list: error: group={unknown[0]!r} is not allowed: one of {', '.join(GROUPS)}",
            file=sys.stderr,
        )
        return 2
    print(listing(args or GROUPS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
