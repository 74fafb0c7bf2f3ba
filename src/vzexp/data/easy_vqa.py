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
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from vzexp.data.instruct import InstructData
from vzexp.data.sample import Sample
from vzexp.errors import ConfigError, MissingPathError

SPLITS = ("train", "test")
SHAPES = ("circle", "rectangle", "triangle")
COLORS = ("black", "blue", "brown", "gray", "green", "red", "teal", "yellow")
INSTRUCT_FILE = "train.json"
ANSWER_TYPES = ("yes/no", "shape", "color")


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


# "is there not a ...", "is no ... present", "does the image not contain ..."
NEGATION = re.compile(r"\b(not|no)\b")


def asks_present_attribute(question: str, answer: str) -> bool:
    """Whether a yes/no question names the colour or shape the image has: "is there a red
    shape?" -> yes, or "is there not a red shape?" -> no, on a red shape."""
    return (answer == "yes") != bool(NEGATION.search(question))


def balance_yes_no(qas: list[tuple[str, str]], present_first: bool) -> list[tuple[str, str]]:
    """The yes/no questions alternating between those about an attribute the image has and
    those about one it lacks; each kind keeps its order."""
    present = [qa for qa in qas if asks_present_attribute(*qa)]
    absent = [qa for qa in qas if not asks_present_attribute(*qa)]
    first, second = (present, absent) if present_first else (absent, present)
    out = []
    for k in range(max(len(present), len(absent))):
        out += first[k : k + 1] + second[k : k + 1]
    return out


def named_attribute(question: str) -> tuple[str, str] | None:
    """(kind, word) of the colour or shape a question names: ("color", "red")."""
    for kind, words in (("color", COLORS), ("shape", SHAPES)):
        for word in words:
            if re.search(rf"\b{word}\b", question):
                return kind, word
    return None


def image_attributes(qas: list[tuple[str, str]]) -> dict[str, str]:
    """The colour and shape of an image's one shape, as far as its own questions tell: a colour
    or shape answer (or the colour a shape question names, "what is the gray shape?"), a
    present-attribute yes/no question, or every other value asked absent."""
    known: dict[str, str] = {}
    absent: dict[str, set[str]] = {"color": set(), "shape": set()}
    for question, answer in qas:
        kind = answer_type(answer)
        if kind != "yes/no":
            known.setdefault(kind, answer)
            if (named := named_attribute(question)) is not None:  # "what is the gray shape?"
                known.setdefault(*named)
        elif (named := named_attribute(question)) is not None:
            if asks_present_attribute(question, answer):
                known.setdefault(named[0], named[1])
            else:
                absent[named[0]].add(named[1])
    for kind, words in (("color", COLORS), ("shape", SHAPES)):
        left = [w for w in words if w not in absent[kind]]
        if kind not in known and len(left) == 1:
            known[kind] = left[0]
    return known


def present_twins(qas: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The image's questions plus, for its absent-attribute yes/no questions beyond its present
    ones, each one's twin naming the image's own colour or shape instead, its answer flipped
    ("is there a blue shape?" no -> "is there a red shape?" yes, on a red shape), so that as many
    yes/no questions name a present attribute as an absent one. Only 1 in 5 of the split's do, and
    1,036 of the 4,000 train images have none: the model learns the question's prior, not to look.
    Images whose attribute their questions do not tell get no twin for it, and no question is
    asked twice (its second asking could be answered from the first)."""
    attributes = image_attributes(qas)
    yes_no = [qa for qa in qas if answer_type(qa[1]) == "yes/no"]
    missing = sum(not asks_present_attribute(*qa) for qa in yes_no) - sum(
        asks_present_attribute(*qa) for qa in yes_no
    )
    twins = []
    asked = {question for question, _ in qas}
    for question, answer in yes_no:
        if len(twins) >= missing:
            break
        named = named_attribute(question)
        if asks_present_attribute(question, answer) or named is None or named[0] not in attributes:
            continue
        twin = re.sub(rf"\b{named[1]}\b", attributes[named[0]], question)
        if twin not in asked:  # "is there a blue / green shape?" both give "is there a red shape?"
            asked.add(twin)
            twins.append((twin, "no" if answer == "yes" else "yes"))
    return qas + twins


def balanced_order(
    qas: list[tuple[str, str]], rng: random.Random, present_first: bool = False
) -> list[tuple[str, str]]:
    """Two yes/no questions first, one about an attribute the image has and one about one it
    lacks (which leads: a coin, or the present one if `present_first`), then one colour and one
    shape question, then the other yes/no ones alternating the same way, then the colour and
    shape rephrasings.

    Yes/no first because every earlier turn leaks into a later one: after "what color is the
    shape? red" the model answers "is there a red shape?" from the text and never learns to
    look, and evaluation asks each question alone (the runs that showed it:
    experiments/build_small_real/README.md)."""
    yes_no = [qa for qa in qas if answer_type(qa[1]) == "yes/no"]
    firsts: dict[str, tuple[str, str]] = {}
    for qa in qas:
        if answer_type(qa[1]) != "yes/no":
            firsts.setdefault(answer_type(qa[1]), qa)
    chosen = set(firsts.values())
    rest = [qa for qa in qas if answer_type(qa[1]) != "yes/no" and qa not in chosen]
    yes_no = balance_yes_no(yes_no, present_first or rng.random() < 0.5)
    return yes_no[:2] + list(firsts.values()) + yes_no[2:] + rest


def instruct_records(
    dataset: EasyVQA,
    seed: int = 0,
    balanced: bool = False,
    present_first: bool = False,
    twins: bool = False,
    answer_types: tuple[str, ...] | None = None,
) -> list[dict]:
    """One LLaVA instruction record per image: all its questions, in a seeded order within
    two groups, its colour and shape questions first, then its yes/no ones (three quarters of
    the split), so that train_data.max_turns keeps the rarer types.

    balanced: two yes/no questions first, one about an attribute the image has and one about one
    it lacks, then one colour and one shape question, then the rest (balanced_order). Only 1 in 5
    of the split's yes/no questions names a present attribute, and in the seeded order the
    colour and shape answers come before them, so the model learns to answer yes/no from the
    conversation, not the image.

    present_first: in the balanced order, the present-attribute questions always lead. For
    isolated turns (train_data.isolate_turns), where no turn sees another and the coin guards
    against nothing, so that max_turns keeps as many of the rare present ones as it can.

    twins: each image's yes/no questions made half present, half absent by present_twins.

    answer_types: only the questions with these answer types (("color", "shape"): a projector
    alignment stage on what the image shows); images left without a question get no record."""
    by_image: dict[int, list[tuple[str, str]]] = {}
    for question, answer, image_id in dataset.rows:
        if answer_types is None or answer_type(answer) in answer_types:
            by_image.setdefault(image_id, []).append((question, answer))
    records = []
    for image_id in sorted(by_image):
        qas = present_twins(by_image[image_id]) if twins else by_image[image_id]
        rng = random.Random(f"easy_vqa:{seed}:{image_id}")
        rng.shuffle(qas)
        qas.sort(key=lambda qa: answer_type(qa[1]) == "yes/no")  # stable: the order stays seeded
        if balanced:
            qas = balanced_order(qas, rng, present_first)
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
    out: Path,
    split: str = "train",
    root: str | None = None,
    seed: int = 0,
    balanced: bool = False,
    present_first: bool = False,
    twins: bool = False,
    answer_types: tuple[str, ...] | None = None,
) -> Path:
    """Write out/train.json (image paths relative to the split's image folder); returns that
    folder, the records' image root."""
    dataset = EasyVQA(split, root)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{INSTRUCT_FILE}.{os.getpid()}"
    tmp.write_text(
        json.dumps(
            instruct_records(dataset, seed, balanced, present_first, twins, answer_types),
            indent=0,
        )
    )
    os.replace(tmp, out / INSTRUCT_FILE)
    return dataset.images


@dataclass
class EasyVqaTrainData(InstructData):
    """train_data=easy_vqa: easy-vqa's train split in LLaVA's instruction format, one
    conversation per image, exported into the cache once per ordering (or a LLaVA instruction
    JSON given by path). The orderings are easy-vqa's own: see `instruct_records`."""

    # two yes/no turns first, one naming a present attribute and one an absent one
    balance_yes_no: bool = False
    # twins of absent-attribute yes/no questions naming the image's own colour or shape
    present_twins: bool = False
    # keep only the questions of these answer types (e.g. [color, shape]); null: all
    answer_types: list[str] | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.answer_types is not None:
            bad = [t for t in self.answer_types if t not in ANSWER_TYPES]
            if bad or not self.answer_types:
                raise ConfigError(
                    "train_data.answer_types",
                    list(self.answer_types),
                    f"a non-empty list of {', '.join(ANSWER_TYPES)}, or null for all",
                )
        for key in ("balance_yes_no", "present_twins", "answer_types"):
            if getattr(self, key) and self.path is not None:
                off = "null" if key == "answer_types" else "false"
                raise ConfigError(
                    f"train_data.{key}",
                    getattr(self, key),
                    f"{off} with train_data.path (it orders easy-vqa's own split)",
                )

    def source(self, cache_root: Path) -> tuple[Path, Path]:
        if self.path is not None:
            return super().source(cache_root)
        # isolated turns cannot leak into each other: the present-attribute questions lead
        present_first = self.balance_yes_no and self.isolate_turns
        types = (
            tuple(t for t in ANSWER_TYPES if t in self.answer_types) if self.answer_types else None
        )
        order = "-balanced" if self.balance_yes_no else ""
        order += "-present-first" if present_first else ""
        order += "-twins" if self.present_twins else ""
        order += "-" + "-".join(t.replace("/", "") for t in types) if types else ""
        root = cache_root / "train_data" / f"easy_vqa-train-seed{self.seed}{order}"
        image_root = export_instruct(
            root,
            "train",
            seed=self.seed,
            balanced=self.balance_yes_no,
            present_first=present_first,
            twins=self.present_twins,
            answer_types=types,
        )
        return root / INSTRUCT_FILE, image_root
