"""Real benchmarks read from the user's local files, in the two layouts people have them in:

* `layout=lmms_eval`: the Hugging Face dataset files lmms-eval uses (lmms-lab/<name>, parquet),
  read with the `datasets` library from a local directory (no hub access): every *.parquet under
  `root` (or under `root/<split>` / files named `<split>-*.parquet` when `split` is set);
* `layout=llava`: LLaVA's evaluation layout (its docs/Evaluation.md, playground/data/eval/<name>):
  the question file whose `text` already holds LLaVA-1.5's prompt, the image folder, and the
  answer files its scripts read (POPE's coco/coco_pope_<split>.json, GQA's
  testdev_balanced_questions.json, TextVQA_0.5.1_val.json, ScienceQA's problems.json,
  SEED-Bench.json, MMBench's TSV with its base64 images, MME's per-image txt files; for VQAv2 val,
  an annotation file of question_id + answer / label / answers). Default file names are
  LLaVA's where known; `data.dataset.questions/annotations/images=` override them.

Each benchmark turns a row into a prompt as LLaVA-1.5 (and lmms-eval's llava tasks) ask it:
"Answer the question using a single word or phrase." for short answers, lettered options and
"Answer with the option's letter from the given choices directly." for multiple choice; and
names its official scorer (vzexp.data.scorers). Images are decoded only when a sample is read.
"""

from __future__ import annotations

import ast
import base64
import csv
import io
import json
import re
from collections import Counter
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from vzexp.data.sample import Sample
from vzexp.errors import ConfigError, MissingPathError, first_line

SHORT = "Answer the question using a single word or phrase."
LETTER = "Answer with the option's letter from the given choices directly."
LAYOUTS = ("lmms_eval", "llava")


def lettered(options: list[str]) -> str:
    return "\n".join(f"{chr(65 + k)}. {o}" for k, o in enumerate(options))


def _text(value) -> str:
    """A cell as text ('' for missing/NaN cells, as pandas hands them over)."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value).strip()


def read_parquet(root: Path, split: str | None):
    """A `datasets.Dataset` of the parquet files of one split, from a local directory."""
    import datasets

    candidates = [root / split] if split else []
    files = []
    for folder in [*candidates, root]:
        if folder.is_dir():
            files = sorted(folder.rglob("*.parquet"))
            if split and folder == root:
                files = [f for f in files if f.name.startswith(f"{split}-")] or files
            if files:
                break
    if not files:
        raise MissingPathError(
            f"data.dataset.root={str(root)!r}: no .parquet files there (layout=lmms_eval expects "
            "the lmms-lab dataset files, e.g. a snapshot of lmms-lab/POPE)"
        )
    for f in files:  # a footer read per file names the bad one (datasets' error does not)
        _check_parquet(f)
    return datasets.load_dataset(
        "parquet", data_files=[str(f) for f in files], split="train", keep_in_memory=False
    )


def _check_parquet(path: Path) -> None:
    import pyarrow.parquet as pq

    try:
        pq.read_metadata(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for a bad or torn file
        raise MissingPathError(
            f"{str(path)!r} is not a readable parquet file ({first_line(exc)}); re-download or remove it"
        ) from exc


def read_jsonl(path: Path, key: str) -> list[dict]:
    if not path.is_file():
        raise MissingPathError(f"{key}={str(path)!r}: no such file")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise MissingPathError(
                f"{key}={str(path)!r}: line {n} is not valid JSON ({exc.msg}); expected one JSON "
                "object per line"
            ) from None
    return rows


def read_annotations(path: Path) -> dict[str, dict]:
    """Gold answers by question id, from the files LLaVA's evaluation scripts read:
    JSONL lines with question_id (POPE's coco_pope_*.json; a directory of them is read whole),
    a JSON dict keyed by question id (GQA's testdev_balanced_questions.json, ScienceQA's
    problems.json), or a JSON object holding a list under "data" (TextVQA_0.5.1_val.json),
    "annotations" (VQAv2's v2_mscoco_val2014_annotations.json) or "questions" (SEED-Bench.json)."""
    key = "data.dataset.annotations"
    if path.is_dir():
        found: dict[str, dict] = {}
        for file in sorted(path.glob("*.json*")):
            found.update(read_annotations(file))
        return found
    if not path.is_file():
        raise MissingPathError(f"{key}={str(path)!r}: no such file or directory")
    if path.suffix == ".jsonl":
        return {str(r["question_id"]): r for r in read_jsonl(path, key)}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:  # JSON lines under a .json name (POPE's coco_pope_*.json)
        return {str(r["question_id"]): r for r in read_jsonl(path, key)}
    if isinstance(data, dict) and "question_id" in data:  # a one-line JSONL file
        return {str(data["question_id"]): data}
    if isinstance(data, dict):
        for field in ("data", "annotations", "questions"):
            if isinstance(data.get(field), list):
                return {str(r["question_id"]): r for r in data[field]}
        return {str(k): v for k, v in data.items()}
    if isinstance(data, list):
        return {str(r.get("question_id", r.get("id"))): r for r in data}
    raise MissingPathError(f"{key}={str(path)!r}: not an annotation file LLaVA's scripts read")


def read_questions(path: Path) -> list[dict]:
    """LLaVA's question file: JSONL (question_id, image, text[, category]), or ScienceQA's
    llava_test_CQM-A.json (a JSON list with id, image and the prompt as the first human turn)."""
    key = "data.dataset.questions"
    if path.suffix == ".json" and path.is_file():
        rows = []
        for r in json.loads(path.read_text()):
            if "image" not in r:
                continue  # ScienceQA's text-only questions are not in the -IMG set
            text = r["conversations"][0]["value"].replace("<image>", "").strip()
            rows.append({"question_id": r["id"], "image": r["image"], "text": text})
        return rows
    rows = read_jsonl(path, key)
    for n, row in enumerate(rows, 1):
        if problem := question_problem(row):
            raise MissingPathError(
                f"{key}={str(path)!r}: record {n} is not a question ({problem}); each line is "
                "an object with question_id, image (a file name) and text"
            )
    return rows


def question_problem(row) -> str | None:
    """What makes a line of LLaVA's question file unusable, if anything."""
    if not isinstance(row, dict):
        return f"a JSON {type(row).__name__}, not an object"
    for field in ("question_id", "image", "text"):
        if field not in row:
            return f"no {field!r}"
    for field in ("image", "text"):
        if not isinstance(row[field], str):
            return f"{field}={row[field]!r}, not a string"
    return None


def gold_answer(gold: dict) -> tuple[str, list[str] | None, dict]:
    """(answer, annotator answers or None, extra meta) from one annotation record."""
    answers = gold.get("answers")
    if answers is not None:
        answers = [a["answer"] if isinstance(a, dict) else str(a) for a in answers]
    answer = gold.get("multiple_choice_answer", gold.get("answer", gold.get("label")))
    meta = {}
    if "choices" in gold and isinstance(answer, int):  # ScienceQA problems.json: an index
        meta["options"] = list(gold["choices"])
        answer = chr(65 + answer)
    if answer is None and answers:
        answer = Counter(answers).most_common(1)[0][0]
    return str(answer), answers, meta


def image_loader(rows, i: int, column: str = "image"):
    """A loader of row i's image (decoded by `datasets`, or raw bytes / a path)."""

    def load():
        value = rows[i][column]
        if isinstance(value, list):  # SEED-Bench: a list of frames/images
            value = value[0]
        if isinstance(value, dict):
            raw = value.get("bytes")
            value = Image.open(io.BytesIO(raw)) if raw else Image.open(value["path"])
        elif isinstance(value, str):  # MMBench's TSV: the image as base64 text
            value = Image.open(io.BytesIO(base64.b64decode(value)))
        return value

    return load


class Benchmark(Dataset):
    """A benchmark: rows read once, one Sample per item (an item can be a rotated copy of a row,
    for MMBench's circular evaluation)."""

    name = "benchmark"
    scorer = "exact_match"
    # LLaVA's file names under playground/data/eval/<benchmark> (layout=llava), when known
    llava_files = {
        "questions": "questions.jsonl",
        "annotations": "annotations.jsonl",
        "images": "images",
    }

    def __init__(
        self,
        root: str | None = None,
        layout: str = "lmms_eval",
        split: str | None = None,
        questions: str | None = None,
        annotations: str | None = None,
        images: str | None = None,
    ):
        if layout not in LAYOUTS:
            raise ConfigError("data.dataset.layout", layout, f"one of {', '.join(LAYOUTS)}")
        if not root:
            raise MissingPathError(
                f"data.dataset.root is not set: give the local directory of {self.name}, "
                f"e.g. data={self.name} data.dataset.root=/data/{self.name}"
            )
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise MissingPathError(f"data.dataset.root={root!r}: no such directory")
        self.layout = layout
        if layout == "lmms_eval":
            self.rows = read_parquet(self.root, split)
            self.items = [item for i in range(len(self.rows)) for item in self.expand(i)]
        else:
            self.read_llava(questions, annotations, images)

    # ---- what a benchmark defines ---------------------------------------------------------------
    def read_llava(self, questions: str | None, annotations: str | None, images: str | None):
        """LLaVA's layout: the question file, one gold record per question, the image folder."""
        files = self.llava_files
        self.images = self.root / (images or files["images"])
        self.rows = read_questions(self.root / (questions or files["questions"]))
        golds = self.llava_golds(self.root / (annotations or files["annotations"]))
        self.items = [self.from_llava(row, gold) for row, gold in zip(self.rows, golds)]

    def expand(self, i: int) -> list[dict]:
        """Items of parquet row i: dicts with id, question, answer, meta, image (a callable)."""
        raise NotImplementedError

    def llava_golds(self, path: Path) -> list[dict]:
        """One annotation per question row (by question id; POPE overrides: by order)."""
        answers = read_annotations(path)
        golds = []
        for row in self.rows:
            gold = answers.get(str(row["question_id"]))
            if gold is None:
                raise MissingPathError(
                    f"data.dataset.annotations={str(path)!r}: no answer for question_id "
                    f"{row['question_id']!r}"
                )
            golds.append(gold)
        return golds

    def from_llava(self, row: dict, gold: dict) -> dict:
        """An item from LLaVA's question line (its text is the prompt) and its annotation."""
        answer, answers, meta = gold_answer(gold)
        meta.update({k: row[k] for k in ("category",) if k in row})
        if answers is not None:
            meta["answers"] = answers
        for key in ("options", "circular_id", "image_id", "question_type"):
            if key in gold:
                meta[key] = gold[key]
        image = self.images / row["image"]
        return {
            "id": str(row["question_id"]),
            "question": row["text"],
            "answer": str(answer),
            "meta": meta,
            "image": lambda path=image: Image.open(path),
        }

    # ---- Dataset ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.items)

    def sample_id(self, i: int) -> str:
        return self.items[i]["id"]

    def __getitem__(self, i: int) -> Sample:
        item = self.items[i]
        try:
            image = item["image"]()
            image.load()
        except (OSError, ValueError) as exc:
            raise MissingPathError(
                f"data: the image of sample {item['id']!r} could not be read ({exc}); the file "
                "is missing or corrupt"
            ) from None
        return Sample(
            id=item["id"],
            image=image.convert("RGB"),
            question=item["question"],
            answer=item["answer"],
            meta=item["meta"],
        )

    def row_image(self, i: int, column: str = "image"):
        return image_loader(self.rows, i, column)


class POPE(Benchmark):
    name, scorer = "pope", "pope"
    llava_files = {"questions": "llava_pope_test.jsonl", "annotations": "coco", "images": "val2014"}

    def llava_golds(self, path: Path) -> list[dict]:
        """As LLaVA's eval_pope.py: the questions of each category, in file order, against the
        lines of <annotations>/coco_pope_<category>.json, in order."""
        if path.is_file():
            return super().llava_golds(path)
        by_category: dict[str, list[dict]] = {}
        for category in dict.fromkeys(row.get("category", "") for row in self.rows):
            label_file = path / f"coco_pope_{category}.json"
            by_category[category] = read_jsonl(label_file, "data.dataset.annotations")
        golds, seen = [], Counter()
        for row in self.rows:
            category = row.get("category", "")
            labels = by_category[category]
            if seen[category] >= len(labels):
                raise MissingPathError(
                    f"data.dataset.annotations={str(path)!r}: coco_pope_{category}.json has "
                    f"fewer lines ({len(labels)}) than the {category} questions"
                )
            golds.append(labels[seen[category]])
            seen[category] += 1
        return golds

    def expand(self, i: int) -> list[dict]:
        row = self.rows[i]
        return [
            {
                "id": str(row.get("question_id", row.get("id", i))),
                "question": f"{_text(row['question'])}\n{SHORT}",
                "answer": _text(row["answer"]).lower(),
                "meta": {"category": _text(row.get("category"))},
                "image": self.row_image(i),
            }
        ]


class MME(Benchmark):
    """lmms-lab/MME: two yes/no questions per image; LLaVA-1.5 replaces MME's "Please answer yes
    or no." with its short-answer instruction."""

    name, scorer = "mme", "mme"

    llava_files = {
        "questions": "llava_mme.jsonl",
        "annotations": "MME_Benchmark_release_version",
        "images": "MME_Benchmark_release_version",
    }

    def llava_golds(self, path: Path) -> list[dict]:
        """As LLaVA's convert_answer_to_mme.py: the gold answers are MME's own txt files
        (<category>/[questions_answers_YN/]<image>.txt, lines "question<TAB>answer"), found by
        the question id "<category>/<image file>" and the question with LLaVA's instruction put
        back to MME's "Please answer yes or no."."""
        if not path.is_dir():
            return super().llava_golds(path)
        truth: dict[tuple[str, str, str], str] = {}
        for folder in sorted(p for p in path.iterdir() if p.is_dir()):
            qa = folder / "questions_answers_YN" if (folder / "images").is_dir() else folder
            for txt in sorted(qa.glob("*.txt")):
                for line in txt.read_text().splitlines():
                    if "\t" in line:
                        question, answer = line.rsplit("\t", 1)
                        truth[(folder.name, txt.name, question.strip())] = answer.strip()
        golds = []
        for row in self.rows:
            category, _, name = str(row["question_id"]).partition("/")
            txt = Path(name).stem + ".txt"
            prompt = row["text"].replace(SHORT, "").strip()
            candidates = [
                prompt,
                f"{prompt} Please answer yes or no.",
                f"{prompt}  Please answer yes or no.",
            ]
            answer = next(
                (truth[(category, txt, c)] for c in candidates if (category, txt, c) in truth), None
            )
            if answer is None:
                raise MissingPathError(
                    f"data.dataset.annotations={str(path)!r}: no MME answer for "
                    f"{row['question_id']!r} ({prompt!r})"
                )
            golds.append({"answer": answer, "category": category, "image": row["question_id"]})
        return golds

    def from_llava(self, row: dict, gold: dict) -> dict:
        item = super().from_llava(row, gold)
        item["meta"] = {"category": gold["category"], "image": gold["image"]}
        path = self.images / row["image"]
        if not path.is_file():  # categories keeping their pictures in an images/ folder
            path = path.parent / "images" / path.name
        item["image"] = lambda path=path: Image.open(path)
        return item

    def expand(self, i: int) -> list[dict]:
        row = self.rows[i]
        question = _text(row["question"]).replace("Please answer yes or no.", "").strip()
        image_id = _text(row.get("question_id")) or str(i)
        return [
            {
                "id": f"{_text(row['category'])}/{image_id}/{i}",
                "question": f"{question}\n{SHORT}",
                "answer": _text(row["answer"]),
                "meta": {"category": _text(row["category"]), "image": image_id},
                "image": self.row_image(i),
            }
        ]


class VQAv2(Benchmark):
    name, scorer = "vqav2", "vqav2"

    def expand(self, i: int) -> list[dict]:
        row = self.rows[i]
        answers = [a["answer"] if isinstance(a, dict) else a for a in row["answers"]]
        return [
            {
                "id": str(row["question_id"]),
                "question": f"{_text(row['question'])}\n{SHORT}",
                "answer": _text(row.get("multiple_choice_answer"))
                or Counter(answers).most_common(1)[0][0],
                "meta": {"answers": answers},
                "image": self.row_image(i),
            }
        ]


class TextVQA(VQAv2):
    name, scorer = "textvqa", "textvqa"
    llava_files = {
        "questions": "llava_textvqa_val_v051_ocr.jsonl",
        "annotations": "TextVQA_0.5.1_val.json",
        "images": "train_images",
    }


class GQA(Benchmark):
    """lmms-lab/GQA keeps questions and images apart: `<split>_instructions` (imageId, question,
    answer) and `<split>_images` (id, image), e.g. split=testdev_balanced."""

    name, scorer = "gqa", "gqa"
    llava_files = {
        "questions": "llava_gqa_testdev_balanced.jsonl",
        "annotations": "data/testdev_balanced_questions.json",
        "images": "data/images",
    }

    def __init__(self, root: str | None = None, split: str | None = "testdev_balanced", **kw):
        if kw.get("layout", "lmms_eval") == "lmms_eval" and root:
            base = Path(root).expanduser()
            self.image_rows = read_parquet(base, f"{split}_images")
            self.image_index = {r: k for k, r in enumerate(self.image_rows["id"])}
            split = f"{split}_instructions"
        super().__init__(root, split=split, **kw)

    def expand(self, i: int) -> list[dict]:
        row = self.rows[i]
        k = self.image_index.get(row["imageId"])
        if k is None:
            raise MissingPathError(f"data.dataset.root: no image {row['imageId']!r} for GQA")
        return [
            {
                "id": str(row["id"]),
                "question": f"{_text(row['question'])}\n{SHORT}",
                "answer": _text(row["answer"]),
                "meta": {"image_id": row["imageId"]},
                "image": image_loader(self.image_rows, k),
            }
        ]


class ScienceQA(Benchmark):
    """lmms-lab/ScienceQA, config ScienceQA-IMG (image questions only)."""

    name, scorer = "scienceqa", "scienceqa"
    llava_files = {
        "questions": "llava_test_CQM-A.json",
        "annotations": "problems.json",
        "images": "images/test",
    }

    def expand(self, i: int) -> list[dict]:
        row = self.rows[i]
        if row.get("image") is None:
            return []
        options = [str(c) for c in row["choices"]]
        context = f"Context: {_text(row.get('hint'))}\n" if _text(row.get("hint")) else ""
        return [
            {
                "id": str(row.get("id", i)),
                "question": f"{context}{_text(row['question'])}\n{lettered(options)}\n{LETTER}",
                "answer": chr(65 + int(row["answer"])),
                "meta": {"options": options},
                "image": self.row_image(i),
            }
        ]


class SEEDBench(Benchmark):
    """lmms-lab/SEED-Bench, image questions (data_type == "image")."""

    name, scorer = "seed", "seed"
    # LLaVA: llava-seed-bench.jsonl (image questions) + SEED-Bench.json ({"questions": [...]})
    llava_files = {
        "questions": "llava-seed-bench.jsonl",
        "annotations": "SEED-Bench.json",
        "images": ".",
    }

    def expand(self, i: int) -> list[dict]:
        row = self.rows[i]
        if _text(row.get("data_type", "image")) != "image":
            return []
        options = [_text(row[f"choice_{c}"]) for c in "abcd"]
        return [
            {
                "id": str(row["question_id"]),
                "question": f"{_text(row['question'])}\n{lettered(options)}\n{LETTER}",
                "answer": _text(row["answer"]),
                "meta": {"options": options},
                "image": self.row_image(i),
            }
        ]


class MMBench(Benchmark):
    """lmms-lab/MMBench (en dev), or with layout=llava the TSV LLaVA evaluates on
    (mmbench_dev_20230712.tsv: index, question, hint, A-D, answer, category, base64 image): each
    question is asked once per rotation of its options (circular evaluation); the rotations share
    circular_id = the row's index."""

    name, scorer = "mmbench", "mmbench"
    llava_files = {"questions": "mmbench_dev_20230712.tsv", "annotations": "", "images": ""}

    def read_llava(self, questions: str | None, annotations: str | None, images: str | None):
        """The TSV holds questions, answers and images (base64) together."""
        path = self.root / (questions or self.llava_files["questions"])
        if not path.is_file():
            raise MissingPathError(f"data.dataset.questions={str(path)!r}: no such file")
        csv.field_size_limit(1 << 30)  # base64 images are long cells
        with path.open(newline="") as f:
            self.rows = list(csv.DictReader(f, delimiter="\t"))
        missing = {"index", "question", "A", "B", "answer", "image"} - set(
            self.rows[0] if self.rows else {}
        )
        if missing:
            raise MissingPathError(
                f"data.dataset.questions={str(path)!r}: not MMBench's TSV (no {', '.join(sorted(missing))} column)"
            )
        self.items = [item for i in range(len(self.rows)) for item in self.expand(i)]

    def expand(self, i: int) -> list[dict]:
        row = self.rows[i]
        options = [_text(row.get(c)) for c in "ABCDEFGH" if _text(row.get(c))]
        gold = ord(_text(row["answer"])) - 65
        hint = _text(row.get("hint"))
        items = []
        for shift in range(len(options)):
            rotated = options[shift:] + options[:shift]
            question = f"{hint}\n" if hint else ""
            question += f"{_text(row['question'])}\n{lettered(rotated)}\n{LETTER}"
            items.append(
                {
                    "id": f"{row['index']}-r{shift}",
                    "question": question,
                    "answer": chr(65 + (gold - shift) % len(options)),
                    "meta": {
                        "options": rotated,
                        "circular_id": int(row["index"]) % 1_000_000,
                        "category": _text(row.get("category")),
                    },
                    "image": self.row_image(i),
                }
            )
        return items


class MMMU(Benchmark):
    """lmms-lab/MMMU (validation): the first image only (one image per sample here); the
    question's "<image N>" marks are removed."""

    name, scorer = "mmmu", "mmmu"

    def expand(self, i: int) -> list[dict]:
        row = self.rows[i]
        question = re.sub(r"\s*<image \d+>", "", _text(row["question"])).strip()
        raw = row.get("options")
        options = ast.literal_eval(raw) if isinstance(raw, str) and raw.strip() else (raw or [])
        kind = _text(row.get("question_type")) or "multiple-choice"
        if kind == "multiple-choice":
            prompt = f"{question}\n{lettered(options)}\n{LETTER}"
        else:
            prompt = f"{question}\n{SHORT}"
        return [
            {
                "id": _text(row["id"]),
                "question": prompt,
                "answer": _text(row["answer"]),
                "meta": {"options": options, "question_type": kind},
                "image": self.row_image(i, "image_1"),
            }
        ]
