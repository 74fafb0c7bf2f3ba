"""`python -m vzexp.data.shapes export` in a subprocess: LLaVA-format files, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vzexp.data.shapes import QUESTION_TYPES, ShapesQA


def export(args: list[str], env: dict[str, str], cwd):
    return subprocess.run(
        [sys.executable, "-m", "vzexp.data.shapes", "export", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_export_writes_pngs_and_questions_matching_the_dataset(tmp_path, cli_env):
    out = tmp_path / "shapes"
    proc = export([str(out), "--size", "8", "--seed", "2"], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(proc.stdout.strip().splitlines()) == 1 and "8" in proc.stdout
    assert len(list((out / "images").glob("*.png"))) == 8
    records = [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]
    dataset = ShapesQA(split="test", size=8, seed=2)
    assert len(records) == 8
    for i, record in enumerate(records):
        sample = dataset[i]
        assert set(record) == {"question_id", "image", "text", "category", "answer"}
        assert record["question_id"] == sample.id == f"shapes-test-{i:05d}"
        assert record["text"] == sample.question and record["answer"] == sample.answer
        assert record["category"] == sample.meta["type"] == QUESTION_TYPES[i]
        with Image.open(out / "images" / record["image"]) as image:
            assert image.mode == "RGB"
            assert np.array_equal(np.asarray(image), np.asarray(sample.image))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--size", "0"], "size"),
        (["--split", "val"], "split"),
        (["--size", "many"], "size"),
        ([], "dir"),
    ],
)
def test_bad_arguments_exit_nonzero_with_one_line(tmp_path, cli_env, args, needle):
    target = [str(tmp_path / "out")] if args else []
    proc = export([*target, *args], cli_env, tmp_path)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and needle in lines[0], proc.stderr
    assert not (tmp_path / "out" / "questions.jsonl").exists()


def test_export_into_a_file_path_fails_cleanly(tmp_path, cli_env):
    blocker = tmp_path / "taken"
    blocker.write_text("not a directory")
    proc = export([str(blocker), "--size", "2"], cli_env, tmp_path)
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_export_instruct_writes_the_train_split_in_llava_instruction_format(tmp_path, cli_env):
    from vzexp.data.instruct import read_instruct

    out = tmp_path / "train"
    proc = export([str(out), "--format", "instruct", "--size", "5"], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    raw = json.loads((out / "train.json").read_text())
    assert len(raw) == 5 and raw[0]["conversations"][0]["value"].startswith("<image>\n")
    assert all((out / "images" / r["image"]).is_file() for r in raw)
    assert [r.id for r in read_instruct(out / "train.json")] == [r["id"] for r in raw]
