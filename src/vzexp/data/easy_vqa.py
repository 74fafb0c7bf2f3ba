"""easy-vqa (the `easy-vqa` package, MIT): 64x64 images of one coloured shape, 4,000 train /
1,000 test images with 38,575 / 9,673 questions and 13 answers (yes/no, 3 shapes, 8 colours).

Read from the package's own files (data/<split>/questions.json: [question, answer, image id]
rows; data/<split>/images/<id>.png), or from a copy of that layout (`root=`). Scored by exact
match after normalisation (the dataset's answers are single words), overall and per answer type
(yes/no, shape, color). `export_instruct` writes a split in LLaVA's instruction format: one
multi-turn conversation per image holding all its questions, for task=tune."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from vzexp.data.sample import Sample
from vzexp.errors import ConfigError, MissingPathError

SPLITS = ("train", "test")
SHAPES = ("circle", "rectangle", "triangle")
INSTRUCT_FILE = "train.json"


def answer_type(answer: str) -> str:
    if answer in ("yes", "no"):
        return "yes/no"
    return "shape" if answer in SHAPES else "color"


def data_root(root: str | None) -> Path:
    if root:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise MissingPathError(f"data.dataset.root={root!r}: no such directory")
        return path
    from vzexp.pretrained.packages import package_dir

    return package_dir("easy_vqa", "data=easy_vqa") / "data"


def read_questions(root: Path, split: str) -> list[tuple[str, str, int]]:
    path = root / split / "questions.json"
    if not path.is_file():
        raise MissingPathError(
            f"data.dataset.root={str(root)!r}: no {split}/questions.json there (expected the "
            "easy-vqa layout: <root>/<split>/questions.json and <root>/<split>/images/<id>.png)"
        )
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MissingPathError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    out = []
    for n, row in enumerate(rows if isinstance(rows, list) else [None]):
        if not (isinstance(row, list) and len(row) == 3 and isinstance(row[2], int)):
            raise MissingPathError(
                f"{path}: row {n} is {str(row)[:80]!r}; each row must be [question, answer, image id]"
            )
        out.append((str(row[0]), str(row[1]).strip().lower(), row[2]))
    return out


class EasyVQA(Dataset):
    """One sample per question, in file order; ids are `<split>-<row>`."""

    def __init__(self, split: str = "test", root: str | None = None):
        if split not in SPLITS:
            raise ConfigError("data.dataset.split", split, f"one of {', '.join(SPLITS)}")
        self.root, self.split = data_root(root), split
        self.rows = read_questions(self.root, split)
        self.images = self.root / split / "images"

    def __len__(self) -> int:
        return len(self.rows)

    def sample_id(self, i: int) -> str:
        return f"{self.split}-{i}"

    def image_path(self, image_id: int) -> Path:
        return self.images / f"{image_id}.png"

    def __getitem__(self, i: int) -> Sample:
        question, answer, image_id = self.rows[i]
        path = self.image_path(image_id)
        try:
            image = Image.open(path)
            image.load()
        except (OSError, ValueError) as exc:
            raise MissingPathError(
                f"data: the image of sample {self.sample_id(i)!r} ({path}) could not be read "
                f"({exc}); the file is missing or corrupt"
            ) from None
        return Sample(
            id=self.sample_id(i),
            image=image.convert("RGB"),
            question=question,
            answer=answer,
            meta={"type": answer_type(answer), "image_id": image_id},
        )


def instruct_records(dataset: EasyVQA, seed: int = 0) -> list[dict]:
    """One LLaVA instruction record per image: all its questions, in a seeded order within
    two groups, its colour and shape questions first, then its yes/no ones (three quarters of
    the split), so that train_data.max_turns keeps the rarer types."""
    by_image: dict[int, list[tuple[str, str]]] = {}
    for question, answer, image_id in dataset.rows:
        by_image.setdefault(image_id, []).append((question, answer))
    records = []
    for image_id in sorted(by_image):
        qas = by_image[image_id]
        random.Random(f"easy_vqa:{seed}:{image_id}").shuffle(qas)
        qas.sort(key=lambda qa: answer_type(qa[1]) == "yes/no")  # stable: the order stays seeded
        turns = []
        for k, (question, answer) in enumerate(qas):
            turns.append({"from": "human", "value": f"<image>\n{question}" if k == 0 else question})
            turns.append({"from": "gpt", "value": answer})
        records.append(
            {
                "id": f"{dataset.split}-image-{image_id}",
                "image": dataset.image_path(image_id).name,
                "conversations": turns,
            }
        )
    return records


def export_instruct(
    out: Path, split: str = "train", root: str | None = None, seed: int = 0
) -> Path:
    """Write out/train.json (image paths relative to the split's image folder); returns that
    folder, the records' image root."""
    dataset = EasyVQA(split, root)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{INSTRUCT_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(instruct_records(dataset, seed), indent=0))
    os.replace(tmp, out / INSTRUCT_FILE)
    return dataset.images
