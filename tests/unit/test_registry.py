"""`vzexp.list` (the registry through Hydra's search path) and what derives from it: the strategy
lists in the errors that name alternatives, checked against what each strategy does."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from vzexp_testing import REPO

from vzexp.compress.registry import build_compressor, strategies, strategy_class
from vzexp.errors import ConfigError
from vzexp.list import describe, listing, options, source
from vzexp.models.qwen2_vl import refuse_grid_strategies
from vzexp.paths import config_dir

ENCODER_SIDE = strategies(lambda cls: cls.kind == "encoder")
# on a 64-patch tower without CLS, with a budget of 6: `none` passes every patch on


def test_a_user_dir_adds_options_and_can_shadow_a_shipped_one(tmp_path):
    (tmp_path / "compressor").mkdir()
    (tmp_path / "compressor" / "mine.yaml").write_text("# Mine.\nname: mine\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "toy.yaml").write_text("# My toy.\nname: toy\n")
    assert options("compressor", [str(tmp_path)]) == sorted([*options("compressor"), "mine"])
    assert options("data", [f"file://{tmp_path}"]) == options("data")  # toy counts once
    assert describe("compressor", "mine", [str(tmp_path)]) == "Mine."
    # the primary config dir comes first on Hydra's search path: the shipped toy wins
    assert (
        source("data", "toy", [str(tmp_path)]) == (config_dir() / "data" / "toy.yaml").read_text()
    )


def test_describe_is_the_first_comment_line():
    first = (config_dir() / "compressor" / "visionzip.yaml").read_text().splitlines()[0]
    assert describe("compressor", "visionzip") == first.removeprefix("# ")
    assert listing(["task"]).splitlines()[0] == "task:"
    with pytest.raises(KeyError, match="compressor='nope' is not an option"):
        source("compressor", "nope")


@pytest.mark.parametrize("name", ENCODER_SIDE)
def test_needs_cls_is_what_the_strategy_refuses(name):
    """A strategy refuses a tower without CLS exactly when its class says it needs CLS, and the
    refusal names the registered strategies that accept one."""
    compressor = build_compressor(name, budget=6)
    if not strategy_class(name).needs_cls:
        assert compressor.output_tokens(64, False) == (64 if name == "none" else 6)
        return
    usable = strategies(lambda cls: cls.kind == "encoder" and not cls.needs_cls)
    with pytest.raises(ConfigError) as info:
        compressor.output_tokens(64, False)
    assert str(info.value).endswith(f"for towers without CLS use one of {', '.join(usable)}")
    assert name not in usable


@pytest.mark.parametrize("name", ENCODER_SIDE)
def test_grid_refusal_names_the_strategies_that_fit_a_grid_without_cls(name):
    compressor = build_compressor(name, budget=6)
    if not strategy_class(name).grid_based:
        refuse_grid_strategies(compressor, "qwen2_vl")  # accepted
        return
    with pytest.raises(ConfigError) as info:
        refuse_grid_strategies(compressor, "qwen2_vl")
    usable = str(info.value).split("): one of ")[1].split("; ")[0].split(", ")
    assert usable == sorted(usable) and name not in usable
    for other in usable:  # each one named runs where tokens follow the image and no CLS exists
        candidate = build_compressor(other, budget=6)
        refuse_grid_strategies(candidate, "qwen2_vl")
        assert candidate.output_tokens(64, False) == (64 if other == "none" else 6)
    fits = [
        n for n in ENCODER_SIDE if not (strategy_class(n).grid_based or strategy_class(n).needs_cls)
    ]
    assert usable == fits


def test_the_docs_strategy_table_covers_the_registry():
    """docs/strategies.md's table has a row for every registered strategy but the `none`
    baseline, and names no other, each on the side (encoder/LLM) its class declares."""
    text = (REPO / "docs" / "strategies.md").read_text()
    table = text.split("| strategy | side |")[1].split("\n\n")[0]
    sides = {}
    for row in table.splitlines()[2:]:
        if row.startswith("| `none`"):
            continue
        cells = [c.strip() for c in row.strip("|").split("|")]
        for name in re.findall(r"`(\w+)`", cells[0]):
            sides[name] = cells[1]
    assert sorted(sides) == [n for n in options("compressor") if n != "none"]
    for name, side in sides.items():
        assert side == {"encoder": "encoder", "llm": "LLM"}[strategy_class(name).kind], name


def test_listing_imports_no_heavy_library():
    """`python -m vzexp.list` answers without torch, transformers, Lightning or MLflow."""
    code = (
        "import sys, vzexp.list as registry; registry.listing(); "
        "print([m for m in ('torch', 'transformers', 'lightning', 'mlflow') if m in sys.modules])"
    )
    path = [str(REPO / "src"), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, path)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
