"""Where the config tree is: inside the installed package (wheel) or at the repo top (editable);
where vzexp keeps files it can rebuild (exported training data, cached features)."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def config_dir() -> Path:
    for candidate in (_PACKAGE_DIR / "conf", _PACKAGE_DIR.parents[1] / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"vzexp's conf/ tree is missing (looked in {_PACKAGE_DIR / 'conf'} and the repo root)"
    )


def resource_dir() -> Path:
    return _PACKAGE_DIR / "resources"


def cache_dir() -> Path:
    """$VZEXP_CACHE, else ~/.cache/vzexp (XDG_CACHE_HOME honoured)."""
    if os.environ.get("VZEXP_CACHE"):
        return Path(os.environ["VZEXP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vzexp"


def trained_root() -> Path:
    """Where recipes run with task.publish leave their tuned weights on this machine."""
    return cache_dir() / "trained"


def trained_dir(name: str) -> Path:
    return trained_root() / name
