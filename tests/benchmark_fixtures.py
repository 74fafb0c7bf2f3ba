"""Small fixture copies of each real benchmark, in lmms-eval's parquet column layout (written
with `datasets`, a handful of rows each), for the reader and CLI tests."""

from __future__ import annotations

import datasets
import numpy as np
from omegaconf import OmegaConf
from PIL import Image

from vzexp.list import options, source


def real_benchmarks() -> list[str]:
    """The `data` options that read a real benchmark's files: their dataset class is one of
    vzexp.data.benchmarks'."""
    return [
        name
        for name in options("data")
        if OmegaConf.create(source("data", name))
        .dataset["_target_"]
        .startswith("vzexp.data.benchmarks")
    ]


def picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8))


def write(root, columns: dict, name="test-00000-of-00001.parquet", image_columns=("image",)):
    table = datasets.Dataset.from_dict(columns)
    for column in image_columns:
        if column in columns:
            value = columns[column][0]
            feature = (
                datasets.Sequence(datasets.Image()) if isinstance(value, list) else datasets.Image()
            )
            table = table.cast_column(column, feature)
    root.mkdir(parents=True, exist_ok=True)
    table.to_parquet(str(root / name))
    return root


def fixtures(base) -> dict[str, object]:
    """One small directory per benchmark, in lmms-eval's column layout."""
    imgs = [picture(k) for k in range(4)]
    roots = {}
    roots["pope"] = write(
        base / "pope",
        {
            "question_id": ["1", "2", "3"],
            "question": ["Is there a dog in the image?"] * 3,
            "answer": ["yes", "no", "no"],
            "category": ["adversarial", "popular", "random"],
            "image": imgs[:3],
        },
    )
    roots["mme"] = write(
        base / "MME",  # the folder names of LLaVA's playground/data/eval
        {
            "question_id": ["count/1.jpg", "count/1.jpg"],
            "question": ["Are there two dogs? Please answer yes or no."] * 2,
            "answer": ["Yes", "No"],
            "category": ["count", "count"],
            "image": imgs[:2],
        },
    )
    for name in ("vqav2", "textvqa"):
        roots[name] = write(
            base / name,
            {
                "question_id": [10, 11],
                "question": ["What number is on the bus?", "What color is it?"],
                "answers": [["2"] * 2 + ["3"] * 8, ["red"] * 10],
                "image": imgs[:2],
            },
        )
    # test-dev: questions without answers (EvalAI scores them), beside the question ids of the
    # whole test set (test-dev's and more) that the submission file lists
    testdev = {"question_id": [20, 21], "question": ["What is it?", "How many?"]}
    write(base / "vqav2_testdev", {**testdev, "image": imgs[:2]}, "testdev-00000-of-00001.parquet")
    write(base / "vqav2_testdev", {"question_id": [19, 20, 21, 22]}, "test-00000-of-00001.parquet")
    roots["vqav2_testdev"] = base / "vqav2_testdev"
    gqa = base / "gqa"
    write(
        gqa / "testdev_balanced_instructions",
        {
            "id": ["g1", "g2"],
            "imageId": ["i2", "i1"],
            "question": ["Q1?", "Q2?"],
            "answer": ["no", "left"],
        },
    )
    write(gqa / "testdev_balanced_images", {"id": ["i1", "i2"], "image": imgs[:2]})
    roots["gqa"] = gqa
    roots["scienceqa"] = write(
        base / "scienceqa",
        {
            "question": ["Which is a mammal?", "Which is hot?"],
            "choices": [["cat", "frog"], ["ice", "sun", "snow"]],
            "answer": [0, 1],
            "hint": ["Animals.", ""],
            "image": imgs[:2],
        },
    )
    roots["seed"] = write(
        base / "seed_bench",
        {
            "question_id": ["s1", "s2"],
            "question": ["How many?", "What is it?"],
            "choice_a": ["1", "car"],
            "choice_b": ["2", "dog"],
            "choice_c": ["3", "cat"],
            "choice_d": ["4", "cow"],
            "answer": ["B", "D"],
            "data_type": ["image", "video"],
            "image": [[imgs[0]], [imgs[1]]],
        },
    )
    roots["mmbench"] = write(
        base / "mmbench",
        {
            "index": [7, 8],
            "question": ["Which animal?", "Which colour?"],
            "hint": ["A zoo.", None],
            "A": ["cat", "red"],
            "B": ["dog", "blue"],
            "C": ["cow", None],
            "D": [None, None],
            "answer": ["B", "A"],
            "category": ["animals", "colours"],
            "image": imgs[:2],
        },
    )
    # the test split: an answer column without answers (OpenCompass scores it); 1000007 is the
    # server's rotated copy of question 7, a row of its own
    roots["mmbench_test"] = write(
        base / "mmbench_test",
        {
            "index": [7, 1000007],
            "question": ["Which animal?", "Which animal?"],
            "hint": ["A zoo.", "A zoo."],
            "A": ["cat", "dog"],
            "B": ["dog", "cat"],
            "C": [None, None],
            "D": [None, None],
            "answer": [None, None],
            "category": ["animals", "animals"],
            "L2-category": ["perception", "perception"],
            "source": ["zoo", "zoo"],
            "split": ["test", "test"],
            "image": imgs[:2],
        },
    )
    roots["mmmu"] = write(
        base / "mmmu",
        {
            "id": ["validation_Art_1", "validation_Math_2"],
            "question": ["<image 1> Which style?", "What is x in <image 1>?"],
            "options": ["['Baroque', 'Cubism']", "[]"],
            "answer": ["B", "3"],
            "question_type": ["multiple-choice", "open"],
            "image_1": imgs[:2],
        },
        image_columns=("image_1",),
    )
    return roots
