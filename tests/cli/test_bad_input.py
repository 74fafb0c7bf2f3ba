"""The bad-input matrix: each mistake costs seconds and gives one line naming the key or file,
the value and what is allowed (or how to fix it), exit code 2, and no traceback."""

from __future__ import annotations

import json

import pytest
from vzexp_testing import run_cli

SMALL = ["data.limit=2", "task.max_new_tokens=1", "logger=none"]


def not_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    return ["model=llava_hf", f"model.path={tmp_path / 'empty'}"]


def other_family(tmp_path):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    return ["model=llava_hf", f"model.path={tmp_path / 'bert'}"]


def under_a_file(tmp_path):
    (tmp_path / "a-file").write_text("")
    return [f"hydra.run.dir={tmp_path / 'a-file' / 'run'}"]


def read_only_dir(tmp_path):
    """A directory this process cannot write into: permission bits for a normal user; for root
    (CI), who ignores them, sysfs, where not even root may create a directory."""
    import os

    if os.geteuid() != 0:
        (tmp_path / "ro").mkdir(mode=0o555)
        return [f"hydra.run.dir={tmp_path / 'ro' / 'run'}"]
    try:
        os.mkdir("/sys/vzexp-probe")
    except OSError:
        return ["hydra.run.dir=/sys/vzexp-run"]
    os.rmdir("/sys/vzexp-probe")
    pytest.skip("no read-only directory found for root here")


def malformed_pope(tmp_path):
    root = tmp_path / "pope"
    (root / "val2014").mkdir(parents=True)
    (root / "llava_pope_test.jsonl").write_text('{"question_id": 1, "image": "a.jpg", "text"\n')
    (root / "coco").mkdir()
    return ["data=pope", f"data.dataset.root={root}", "data.dataset.layout=llava"]


def malformed_parquet(tmp_path):
    root = tmp_path / "pope"
    root.mkdir()
    (root / "test-00000-of-00001.parquet").write_bytes(b"PAR1 cut short by a failed download")
    return ["data=pope", f"data.dataset.root={root}"]


CASES = {
    "unknown group option": (["compressor=nosuch"], "compressor='nosuch' is not allowed: one of"),
    "unknown key": (["tokenz=5"], "no key 'tokenz' in the config (to add one use +tokenz=5"),
    "unknown strategy parameter": (
        ["+compressor.bogus=1"],
        "compressor.bogus=1 is not allowed: not a parameter of 'visionzip'",
    ),
    "wrong type": (["tokens=abc"], "tokens='abc' is not allowed: expected integer"),
    "tokens <= 0": (["tokens=0"], "tokens=0 is not allowed: a positive number"),
    "tokens > patches": (["tokens=400"], "tokens=400 is not allowed: 2..196"),
    "dominant + contextual != tokens": (
        ["compressor.dominant=10", "compressor.contextual=4", "tokens=24"],
        "10 + 4 != 24; set tokens=14",
    ),
    "negative layer out of range": (["compressor.layer=-9"], "compressor.layer=-9 is not allowed"),
    "bad enum": (["model.dtype=float8"], "model.dtype='float8' is not allowed: expected one of"),
    "bad limit": (["data.limit=0"], "data.limit=0"),
    "missing model path": (
        ["model=llava_hf", "model.path=/no/such/dir"],
        "model.path='/no/such/dir'",
    ),
    "path that is not a model": (not_a_model, "no config.json there"),
    "model of another family": (other_family, "holds a 'bert' model; this config expects"),
    "benchmark without a root": (["data=pope"], "data.dataset.root is not set"),
    "missing data root": (
        ["data=pope", "data.dataset.root=/no/such/data"],
        "data.dataset.root='/no/such/data': no such directory",
    ),
    "malformed JSONL": (malformed_pope, "llava_pope_test.jsonl"),
    "malformed parquet": (malformed_parquet, "is not a readable parquet file"),
    "CUDA device where there is none": (["model.device=cuda"], "model.device='cuda'"),
    "GPU accelerator where there is none": (["trainer.accelerator=gpu"], "use trainer=cpu"),
    "output directory under a file": (under_a_file, "cannot create the run's output directory"),
    "read-only output directory": (read_only_dir, "cannot create the run's output directory"),
    "bad precision": (["trainer.precision=8-bit"], "trainer.precision='8-bit' is not allowed"),
    "tuning without training data": (["task=tune"], "train_data=None is not allowed"),
    "tuning with FSDP": (
        ["task=tune", "train_data=shapes", "trainer.strategy=fsdp"],
        "trainer.strategy='fsdp' is not allowed",
    ),
    "bad image policy": (["data.on_bad_image=ignore"], "data.on_bad_image='ignore'"),
    "missing projector": (["model.projector=/no/such/projector"], "model.projector='/no/such"),
    "published weights not built yet": (
        ["model.projector=${vzexp_trained:tiny_x}"],
        "not built on this machine yet; build it once with python -m vzexp +experiment=build_tiny_x",
    ),
    "bad publish name": (["task=tune", "train_data=shapes", "task.publish=a/b"], "task.publish"),
    "unknown lr schedule": (
        ["task=tune", "train_data=shapes", "task.schedule=linear"],
        "task.schedule='linear' is not allowed: cosine or constant",
    ),
    "nothing to train": (
        ["task=tune", "train_data=shapes", "task.tune_projector=false"],
        "task.tune_projector=False is not allowed",
    ),
    "half-precision model without autocast": (
        ["task=tune", "train_data=shapes", "model.dtype=bfloat16", "trainer.precision=32-true"],
        "trainer.precision='32-true' is not allowed: bf16-mixed with model.dtype=bfloat16",
    ),
    "a stage with a bad value": (
        ["task=tune", "train_data=shapes", "task.stages=[['task.lr=-1']]"],
        "task.stages[0]: task.lr=-1.0 is not allowed: a learning rate > 0",
    ),
    "a stage with an unknown key": (
        ["task=tune", "train_data=shapes", "task.stages=[[],['task.lrr=1']]"],
        "task.stages[1]=['task.lrr=1'] is not allowed: Hydra overrides that compose",
    ),
    "a stage that changes the model": (
        ["task=tune", "train_data=shapes", "task.stages=[['model.attn_implementation=eager']]"],
        "task.stages[0]=['model.attn_implementation=eager'] is not allowed: overrides that "
        "leave model.attn_implementation as the run has it ('sdpa')",
    ),
    "stages that are not lists of overrides": (
        ["task=tune", "train_data=shapes", "task.stages=['tokens=16']"],
        "task.stages[0]='tokens=16' is not allowed: a list of overrides",
    ),
    "trunk cache not a boolean": (
        ["task=tune", "train_data=shapes", "task.cache_trunk=sometimes"],
        "task.cache_trunk='sometimes' is not allowed",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2(tmp_path, cli_env, case):
    args, needle = CASES[case]
    args = args(tmp_path) if callable(args) else args
    proc = run_cli([*SMALL, *args], cli_env, tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("vzexp: error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_an_unreachable_tracking_server_is_one_line_within_seconds(tmp_path, cli_env):
    env = {**cli_env, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}  # nothing listens on port 9
    proc = run_cli([*SMALL, "logger=mlflow"], env, tmp_path, timeout=60)
    assert proc.returncode == 2
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("vzexp: error:")]
    assert "no MLflow server answers there" in line and "logger=none" in line
