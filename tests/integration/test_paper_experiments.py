"""The paper experiments: one sweep per table over the paper's strategies, budgets and
benchmarks, every benchmark's files under one paths.eval_root, and the plan of their jobs."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from vzexp.config import register_configs, validate
from vzexp.errors import ConfigError
from vzexp.paths import config_dir
from vzexp.report.plan import estimate, plan_text

BENCHMARKS = "gqa,mmbench,mme,pope,scienceqa,seed,textvqa,vqav2,mmmu"


def composed(*overrides):
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize(
    ("name", "model", "tokens"),
    [
        ("paper_llava15", "llava15_7b", "192,128,64"),
        ("paper_llava_next", "llava_next_7b", "128,64,32"),
    ],
)
def test_each_benchmark_reads_its_folder_under_one_root(name, model, tokens):
    cfg = composed(f"+experiment={name}", "paths.eval_root=/tmp/x", "model.path=/tmp/y", "data=mme")
    params = cfg.hydra.sweeper.params
    assert (params.data, params.compressor, params.tokens) == (
        BENCHMARKS,
        "fastv,sparsevlm,visionzip",
        tokens,
    )
    with open_dict(cfg):
        del cfg["hydra"]
    settings = validate(cfg)
    assert settings.model.name == model and settings.model.path == "/tmp/y"
    assert settings.data.dataset["root"] == "/tmp/x/MME"  # LLaVA's folder name


def test_the_paths_are_required(monkeypatch):
    monkeypatch.delenv("VZEXP_EVAL_ROOT", raising=False)
    cfg = composed("+experiment=paper_llava15", "model.path=/tmp/y", "data=gqa")
    with open_dict(cfg):
        del cfg["hydra"]
    with pytest.raises(
        ConfigError, match="^paths.eval_root=None is not allowed: a value is required"
    ):
        validate(cfg)
    monkeypatch.setenv("VZEXP_EVAL_ROOT", "/srv/eval")
    cfg = composed("+experiment=paper_llava15", "model.path=/tmp/y", "data=gqa")
    with open_dict(cfg):
        del cfg["hydra"]
    assert validate(cfg).data.dataset["root"] == "/srv/eval/gqa"


def settings(*overrides):
    cfg = composed(*overrides)
    with open_dict(cfg):
        del cfg["hydra"]
    return validate(cfg)


def test_each_benchmark_defaults_to_its_folder_under_paths_eval_root(monkeypatch, tmp_path):
    monkeypatch.delenv("VZEXP_EVAL_ROOT", raising=False)
    assert settings("data=pope").data.dataset["root"] is None  # unset: data.root is given
    root = f"paths.eval_root={tmp_path}"
    assert settings("data=pope", root).data.dataset["root"] == f"{tmp_path}/pope"
    # the server-scored splits read their benchmark's folder
    assert settings("data=vqav2_testdev", root).data.root == f"{tmp_path}/vqav2"
    assert settings("data=mmbench_test", root).data.root == f"{tmp_path}/mmbench"
    assert settings("data=pope", root, "data.root=/mine").data.dataset["root"] == "/mine"
    monkeypatch.setenv("VZEXP_EVAL_ROOT", "/srv/eval")  # the default of paths.eval_root
    assert settings("data=gqa").data.dataset["root"] == "/srv/eval/gqa"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("''", r"paths\.eval_root='' is not allowed: a directory with one folder per benchmark"),
        ("FILE", r"paths\.eval_root='\S+/file' is not allowed: a directory with one folder"),
        ("[a,b]", r"paths\.eval_root=\['a', 'b'\] is not allowed: Cannot convert"),
    ],
)
def test_a_bad_paths_eval_root_is_one_line(tmp_path, value, message):
    (tmp_path / "file").write_text("")
    value = str(tmp_path / "file") if value == "FILE" else value
    with pytest.raises(ConfigError, match=f"^{message}") as raised:
        settings("data=pope", f"paths.eval_root={value}")
    assert "\n" not in str(raised.value)


def test_the_plan_lists_the_sweep_and_one_full_token_run_per_benchmark():
    model, jobs, _ = estimate("paper_llava_next", ["visionzip"], None)
    assert model == "llava_next_7b"
    compressed = [j for j in jobs if j.overrides["compressor"] != "none"]
    full = [j for j in jobs if j.overrides["compressor"] == "none"]
    assert len(compressed) == 9 * 3 * 3 and len(full) == 9
    assert {j.overrides["data"] for j in full} == set(BENCHMARKS.split(","))
    # the paper's Table 4 times (POPE, seconds); 640/320 have none: bounded by the full model's
    by_cell = {(j.overrides["compressor"], j.overrides.get("tokens")): j.seconds for j in jobs}
    assert by_cell[("visionzip", "32")] == 756 and by_cell[("fastv", "32")] == 1792
    assert by_cell[("none", None)] == 2293 and by_cell[("visionzip", "128")] == 2293
    text = plan_text("paper_llava_next", ["visionzip"])
    hours = (9 * (756 + 1792 + 1895) + 9 * 3 * 2 * 2293 + 9 * 2293) / 3600
    assert f"Estimated: {hours:.1f} GPU hours for 90 jobs" in text


def test_with_the_benchmark_files_the_plan_scales_each_benchmark_by_its_rows(tmp_path):
    from benchmark_fixtures import fixtures

    fixtures(tmp_path)  # POPE: 3 questions, MME: 2; GQA: 2 questions and a table of 2 images
    _, jobs, _ = estimate("paper_llava_next", ["visionzip"], str(tmp_path))
    seconds = {(j.overrides["data"], j.overrides["compressor"]): j.seconds for j in jobs}
    assert seconds[("pope", "none")] == 2293
    assert seconds[("mme", "none")] == pytest.approx(2293 * 2 / 3)
    assert seconds[("gqa", "none")] == pytest.approx(2293 * 2 / 3)  # images table left out
