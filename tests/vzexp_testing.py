"""Helpers the test modules import by name (tests/ is on pytest's pythonpath): the CLI runner.
Fixtures live in conftest.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: int = 300):
    return subprocess.run(
        [sys.executable, "-m", "vzexp", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
