"""`python -m vzexp.list`, a multirun sweep, and the config tree of a non-editable install."""

from __future__ import annotations

import re
import subprocess
import sys

from mlflow.tracking import MlflowClient
from vzexp_testing import REPO, run_cli

from vzexp.compress.registry import strategies
from vzexp.list import groups, options
from vzexp.tracking import is_sweep_parent


def test_list_prints_every_group_with_descriptions(cli_env, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "vzexp.list"],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0
    headers = re.findall(r"^(\S+):$", proc.stdout, re.M)
    assert headers == groups() and "compressor" in headers and "hydra" not in headers
    assert re.search(r"^  visionzip +VisionZip \(CVPR 2025\)", proc.stdout, re.M)
    # every registered strategy is listed, each with a description
    for name in options("compressor"):
        assert re.search(rf"^  {name} +\S", proc.stdout, re.M), name
    bad = subprocess.run(
        [sys.executable, "-m", "vzexp.list", "nope"],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "group='nope'" in bad.stderr


def test_list_includes_a_user_config_dir_on_the_search_path(cli_env, tmp_path):
    """An option in a dir added with hydra.searchpath is listed with the shipped ones."""
    user = tmp_path / "myconf"
    (user / "compressor").mkdir(parents=True)
    (user / "compressor" / "mine.yaml").write_text(
        "# My strategy: VisionZip at another layer.\n"
        "defaults:\n  - visionzip\n  - _self_\nname: mine\nlayer: -3\n"
    )
    searchpath = f"hydra.searchpath=[file://{user}]"
    proc = subprocess.run(
        [sys.executable, "-m", "vzexp.list", "compressor", searchpath],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    listed = re.findall(r"^  (\S+)", proc.stdout, re.M)
    assert listed == sorted([*options("compressor"), "mine"])
    assert re.search(r"^  mine +My strategy: VisionZip at another layer\.$", proc.stdout, re.M)
    assert options("compressor", [str(user)]) == listed
    assert "mine" not in options("compressor")


def test_token_sweep_makes_one_run_per_job(tmp_path, cli_env):
    proc = run_cli(
        ["-m", "tokens=8,16", "data.limit=2", "data.batch_size=2", "task.max_new_tokens=1"],
        cli_env,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("vzexp")
    found = [r for r in client.search_runs([experiment.experiment_id]) if not is_sweep_parent(r)]
    assert sorted(r.data.metrics["visual_tokens"] for r in found) == [8, 16]
    assert all(r.info.status == "FINISHED" for r in found)


def test_every_strategy_runs_in_one_sweep_on_the_default_model(tmp_path, cli_env):
    names = options("compressor")
    llm_side = strategies(lambda cls: cls.kind == "llm")
    args = ["-m", f"compressor={','.join(names)}", "tokens=16", "data.limit=2"]
    proc = run_cli([*args, "data.batch_size=2", "task.max_new_tokens=1"], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("vzexp")
    found = client.search_runs([experiment.experiment_id], max_results=100)
    found = [r for r in found if not is_sweep_parent(r)]
    assert sorted(r.data.params["compressor.name"] for r in found) == names
    assert all(r.info.status == "FINISHED" for r in found)
    for r in found:
        m = r.data.metrics
        name = r.data.params["compressor.name"]
        if name == "none":  # tiny_shapes: 14 x 14 patches, CLS dropped
            assert m["visual_tokens"] == m["visual_tokens_llm"] == 196
        elif name in llm_side:
            # every visual token enters the LLM; its layers see fewer on average
            assert m["visual_tokens"] == 196 and 16 < m["visual_tokens_llm"] < 196
        else:
            assert m["visual_tokens"] == m["visual_tokens_llm"] == 16
        assert m["selection_overhead"] > 0


def test_wheel_ships_the_config_tree(tmp_path, cli_env):
    """A non-editable install (wheel) finds conf/ inside the package, from any working dir."""
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--target",
            str(target),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (target / "vzexp" / "conf" / "config.yaml").is_file()
    env = dict(cli_env, PYTHONPATH=str(target))
    proc = subprocess.run(
        [sys.executable, "-m", "vzexp", "--cfg", "job"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "compressor:" in proc.stdout and "visionzip" in proc.stdout
    imported = subprocess.run(
        [sys.executable, "-c", "import vzexp.paths as p; print(p.config_dir())"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert str(target) in imported.stdout


def test_ablation_experiments_are_sweeps(tmp_path, cli_env):
    """`+experiment=ablation_merge` runs its 12 settings as a sweep without `-m`."""
    args = ["+experiment=ablation_merge", "data.limit=2", "data.batch_size=2"]
    proc = run_cli([*args, "task.max_new_tokens=1"], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("ablation_merge")
    found = client.search_runs([experiment.experiment_id], max_results=100)
    found = [r for r in found if not is_sweep_parent(r)]
    settings = {
        tuple(r.data.params[f"compressor.{k}"] for k in ("merge_space", "target_pick", "merge"))
        for r in found
    }
    assert len(found) == 12 and len(settings) == 12
    assert ("hidden", "similarity", "mean") in settings
