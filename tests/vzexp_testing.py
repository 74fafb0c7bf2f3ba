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


def loss_with_compressor(model, compressor, batch):
    """transformers' own forward loss of `batch` with `compressor` installed (what evaluation at
    that budget runs): the reference the training paths' losses are checked against."""
    import torch

    from vzexp.models.install import install, uninstall

    install(model, compressor)
    try:
        with torch.no_grad():
            return model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                pixel_values=batch["pixel_values"],
                labels=batch["labels"],
            ).loss
    finally:
        uninstall(model)
