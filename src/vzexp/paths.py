"""Where the config tree is: inside the installed package (wheel) or at the repo top (editable)."""

from __future__ import annotations

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
