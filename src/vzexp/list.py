"""The registry of choices: the config groups and their options, as Hydra sees them.

`options(group)` lists a group's options through Hydra's config search path (vzexp's `conf/`,
the search-path plugins' config dirs, and the dirs a user adds with `hydra.searchpath`, in
`conf/config.yaml` or given here), so whatever `python -m vzexp group=option` accepts is listed.
Every other list of strategies, benchmarks or families derives from it.

`python -m vzexp.list [group ...] [hydra.searchpath=[file:///my/conf]]`: every option of every
config group (or of the given ones), with a one-line description (the first comment line of its
YAML). This module stays light (Hydra and the standard library only) so the listing is fast."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

from vzexp.paths import config_dir

PRIMARY = "config"  # the primary config `python -m vzexp` composes
INTERNAL = frozenset({"hydra"})  # Hydra's own groups (launcher, sweeper): not vzexp choices


def _overrides(searchpath: Sequence[str]) -> list[str]:
    """`hydra.searchpath` as a command-line override; plain directories become file:// entries.
    Given, it replaces the primary config's `hydra.searchpath`, as on the command line."""
    if not searchpath:
        return []
    entries = [e if "://" in e else f"file://{Path(e).resolve()}" for e in searchpath]
    return [f"hydra.searchpath=[{','.join(entries)}]"]


@lru_cache(maxsize=8)
def _repository(searchpath: tuple[str, ...]):
    # Hydra's own loader builds the repository a run composes from: its search path
    # (primary dir + plugins) extended by `hydra.searchpath` from the primary config or override.
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path

    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(config_dir())))
    _, repo = loader._parse_overrides_and_create_caching_repo(PRIMARY, _overrides(searchpath))
    return repo


def groups(searchpath: Sequence[str] = ()) -> list[str]:
    """The config groups a user picks options from (sorted), `hydra/*` left out."""
    from hydra.core.object_type import ObjectType

    found = _repository(tuple(searchpath)).get_group_options("", ObjectType.GROUP)
    return sorted(set(found) - INTERNAL)


def options(group: str, searchpath: Sequence[str] = ()) -> list[str]:
    """The options of a config group (sorted): the names `group=<name>` accepts, from every dir
    on the search path and from configs registered in Python (Hydra's plugins register theirs
    so); an option found in several places counts once."""
    from hydra.core.object_type import ObjectType

    return sorted(_repository(tuple(searchpath)).get_group_options(group, ObjectType.CONFIG))


def source(group: str, option: str, searchpath: Sequence[str] = ()) -> str:
    """The YAML text of `group/option` as Hydra would load it (first dir on the search path that
    has it); "" for an option with no file (a structured config registered in Python)."""
    name = f"{group}/{option}"
    for src in _repository(tuple(searchpath)).get_sources():
        if not src.is_config(name):
            continue
        if src.scheme() == "file":
            return (Path(src.path) / f"{name}.yaml").read_text()
        if src.scheme() == "pkg":
            return resources.files(src.path).joinpath(f"{name}.yaml").read_text()
        return ""
    raise KeyError(f"{group}={option!r} is not an option: one of {', '.join(options(group))}")


def describe(group: str, option: str, searchpath: Sequence[str] = ()) -> str:
    """The first comment line of the option's YAML (its one-line description), or ""."""
    for line in source(group, option, searchpath).splitlines():
        if line.startswith("# @package"):  # Hydra's directive, not a description
            continue
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


def listing(chosen: Sequence[str] | None = None, searchpath: Sequence[str] = ()) -> str:
    lines = []
    for group in chosen or groups(searchpath):
        names = options(group, searchpath)
        if not names:
            continue
        lines.append(f"{group}:")
        width = max(len(n) for n in names)
        lines += [f"  {n:{width}}  {describe(group, n, searchpath)}" for n in names]
    return "\n".join(lines)


def _parse_searchpath(value: str) -> list[str]:
    return [e.strip() for e in value.strip().strip("[]").split(",") if e.strip()]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    searchpath: list[str] = []
    chosen = []
    for arg in args:
        key, eq, value = arg.partition("=")
        if eq and key == "hydra.searchpath":
            searchpath = _parse_searchpath(value)
        elif eq:
            return _error(f"{arg} is not allowed: only hydra.searchpath=[...] and group names")
        else:
            chosen.append(arg)
    known = groups(searchpath)
    unknown = [g for g in chosen if g not in known]
    if unknown:
        return _error(f"group={unknown[0]!r} is not allowed: one of {', '.join(known)}")
    print(listing(chosen or known, searchpath))
    return 0


def _error(message: str) -> int:
    print(f"vzexp.list: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
