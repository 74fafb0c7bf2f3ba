"""Checkpoints of every family, saved as transformers saves them, run by `python -m vzexp
model=<family config> model.path=DIR` with no code change; a checkpoint of another family is one
line."""

from __future__ import annotations

import pytest
from family_fixtures import FAMILIES
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from vzexp_testing import run_cli

from vzexp.list import options, source


def family_configs() -> list[tuple[str, str]]:
    """(family, model option) for every model config of the families built here, from the
    registry: the `model` options whose `family` is one of FAMILIES."""
    pairs = []
    for option in options("model"):
        family = OmegaConf.create(source("model", option)).get("family")
        if family in FAMILIES:
            pairs.append((family, option))
    return pairs


CONFIGS = family_configs()
FAST = ["data=shapes", "data.limit=4", "data.batch_size=2", "task.max_new_tokens=2", "tokens=6"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    roots = {}
    for name, build in FAMILIES.items():
        model, processor = build()
        root = tmp_path_factory.mktemp(name)
        model.save_pretrained(root)
        processor.save_pretrained(root)
        roots[name] = root
    return roots


def test_every_family_built_here_has_a_model_config():
    assert sorted({family for family, _ in CONFIGS}) == sorted(FAMILIES)


@pytest.mark.parametrize("name, option", CONFIGS, ids=[option for _, option in CONFIGS])
def test_a_local_checkpoint_runs_with_visionzip_into_mlflow(
    tmp_path, cli_env, checkpoints, name, option
):
    args = [f"model={option}", f"model.path={checkpoints[name]}", *FAST]
    proc = run_cli(args, cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| visual_tokens" in proc.stdout
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    [run] = client.search_runs([client.get_experiment_by_name("vzexp").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["model.family"] == name
    # 112-px shapes images: anyres gives 5 views of 6 tokens (base + 2x2 crops); Qwen one image
    assert run.data.metrics["visual_tokens"] == (30 if name.startswith("llava") else 6)
    assert run.data.metrics["samples"] == 4


def test_a_checkpoint_of_another_family_is_one_line(tmp_path, cli_env, checkpoints):
    args = ["model=qwen2_vl_7b", f"model.path={checkpoints['llava_next']}", *FAST]
    proc = run_cli(args, cli_env, tmp_path)
    assert proc.returncode == 2
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("vzexp: error:")]
    assert "holds a 'llava_next' model; this config expects one of qwen2_vl" in line
    assert "Traceback" not in proc.stderr


def test_pooling_is_refused_before_a_qwen_model_loads(tmp_path, cli_env, checkpoints):
    args = ["model=qwen2_vl_7b", f"model.path={checkpoints['qwen2_vl']}", *FAST]
    proc = run_cli([*args, "compressor=pool"], cli_env, tmp_path)
    assert proc.returncode == 2
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("vzexp: error:")]
    assert "compressor='pool' is not allowed: a strategy that needs no square patch grid" in line
