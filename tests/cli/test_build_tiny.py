"""The tiny model recipe end to end through the CLI, at toy scale: every stage trains and logs to
MLflow, the result is a save_pretrained directory with a model card, and `model=tiny_shapes
model.path=<it>` evaluates it through the standard checkpoint path."""

from __future__ import annotations

import json

from vzexp_testing import run_cli

TOY_RECIPE = [
    "+experiment=build_tiny",
    "task.train_scenes=24",
    "task.eval_size=8",
    "data.batch_size=4",
    *(
        f"task.stages.{stage}.{key}={value}"
        for stage in ("tower", "language", "align", "instruct")
        for key, value in (("steps", 2), ("batch_size", 4), ("warmup_steps", 1))
    ),
    # instruct's second batch is a budget batch (VisionZip at 24 tokens) under seed 0
    "task.budget_fraction=0.5",
    "hydra.run.dir=build",
]


def test_recipe_trains_every_stage_saves_and_reloads(tmp_path, cli_env):
    import mlflow

    proc = run_cli(TOY_RECIPE, cli_env, tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    target = tmp_path / "build" / "tiny_shapes"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json"):
        assert (target / name).is_file(), name
    card = (target / "README.md").read_text()
    assert "python -m vzexp +experiment=build_tiny seed=0" in card
    for qtype in ("color", "shape", "count", "exist_popular", "position", "small"):
        assert f"| {qtype} |" in card
    training = json.loads((target / "training.json").read_text())
    assert set(training["seconds"]) == {"render", "tower", "language", "align", "instruct"}

    mlflow.set_tracking_uri(cli_env["MLFLOW_TRACKING_URI"])
    [run] = mlflow.search_runs(experiment_names=["build_tiny"], output_format="list")
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    stages = ("tower/loss", "language/loss", "align/loss", "instruct/loss")
    for key in (*stages, "instruct/loss_at_budget", "accuracy"):
        assert key in metrics, key
    assert metrics["samples"] == 8

    evaluated = run_cli(
        ["model=tiny_shapes", f"model.path={target}", "data=shapes", "data.limit=4", "logger=none"],
        cli_env,
        tmp_path,
        timeout=300,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "| visual_tokens " in evaluated.stdout


def test_bad_stage_value_is_one_line(tmp_path, cli_env):
    proc = run_cli(
        ["+experiment=build_tiny", "task.stages.align.batch_size=0"], cli_env, tmp_path, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "vzexp: error: task.stages.align.batch_size=0 is not allowed: an integer >= 1"
    )
