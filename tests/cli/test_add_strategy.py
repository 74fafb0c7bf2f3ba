"""Adding a strategy is one module and one YAML (docs/architecture.md): a user's strategy, kept
outside vzexp and found through `hydra.searchpath`, runs from the command line like a shipped
one, and the registry lists it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from vzexp_testing import run_cli

# keeps CLS and the first patches in reading order: a rule whose kept indices are known exactly
DUMMY_MODULE = """
import torch

from vzexp.compress.base import CompressionResult, Compressor
from vzexp.compress.budget import check_tokens


class FirstPatches(Compressor):
    name = "first_patches"

    def __init__(self, budget: int | None = None, layer: int = -2):
        super().__init__(layer)
        self.budget = budget

    def output_tokens(self, num_patches, has_cls):
        return check_tokens(self.budget, 1 + int(has_cls), num_patches + int(has_cls),
                            num_patches, has_cls)

    def compress(self, capture):
        b = capture.hidden.shape[0]
        k = self.output_tokens(capture.hidden.shape[1] - int(capture.has_cls), capture.has_cls)
        index = torch.arange(k).expand(b, k)
        return CompressionResult(tokens=capture.hidden[:, :k], index=index, positions=index,
                                 kept_tokens=k)
"""

DUMMY_YAML = """# The first patches in reading order (a test's strategy).
_target_: first_patches.FirstPatches
name: first_patches
budget: ${tokens}
layer: -2
"""


def test_a_strategy_is_one_module_and_one_yaml(tmp_path, cli_env):
    plugin, conf = tmp_path / "plugin", tmp_path / "myconf" / "compressor"
    plugin.mkdir()
    conf.mkdir(parents=True)
    (plugin / "first_patches.py").write_text(DUMMY_MODULE)
    (conf / "first_patches.yaml").write_text(DUMMY_YAML)
    env = {**cli_env, "PYTHONPATH": f"{plugin}{os.pathsep}{cli_env['PYTHONPATH']}"}
    searchpath = f"hydra.searchpath=[file://{tmp_path / 'myconf'}]"

    listing = subprocess.run(
        [sys.executable, "-m", "vzexp.list", "compressor", searchpath],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert listing.returncode == 0, listing.stderr
    assert "first_patches  The first patches in reading order (a test's strategy)." in (
        listing.stdout
    )

    args = [searchpath, "compressor=first_patches", "tokens=6", "data.limit=3", "logger=none"]
    proc = run_cli([*args, "task.max_new_tokens=1", "task.overlays=0"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = {
        cells[0]: cells[1]
        for line in proc.stdout.splitlines()
        if len(cells := [c.strip() for c in line.strip("|").split("|")]) == 2
    }
    assert (table["compressor"], table["visual_tokens"]) == ("first_patches", "6")
    (predictions,) = tmp_path.rglob("predictions.jsonl")
    kept = [json.loads(line)["kept"] for line in predictions.read_text().splitlines()]
    assert kept == [[0, 1, 2, 3, 4, 5]] * 3  # CLS, then the first five patches
