"""What the benchmark modules share: reading the user's local files in the two layouts people
have them in, the prompts, and the `Benchmark` dataset base class.

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
`SHORT` ("Answer the question using a single word or phrase.") for short answers, lettered
options and `LETTER` for multiple choice. Images are decoded only when a sample is read.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
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


def cell_text(value) -> str:
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
        check_parquet(f)
    return datasets.load_dataset(
        "parquet", data_files=[str(f) for f in files], split="train", keep_in_memory=False
    )


def check_parquet(path: Path) -> None:
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


def columns_digest(rows, columns: tuple[str, ...]) -> str:
    """A digest of the named columns' values, row by row, of a `datasets.Dataset` (read as
    Arrow: images as their encoded bytes, never decoded) or of a list of row dicts; the columns
    the rows lack are left out."""
    if hasattr(rows, "column_names"):
        present = [c for c in columns if c in rows.column_names]
        table = rows.select_columns(present).with_format("arrow")
        batches = (batch.to_pylist() for batch in table.iter(batch_size=256))
    else:
        present = [c for c in columns if rows and c in rows[0]]
        batches = iter([rows])
    digest = hashlib.sha256(repr(present).encode())
    for batch in batches:
        for row in batch:
            for column in present:
                _feed(digest, row.get(column))
    return digest.hexdigest()


def _feed(digest, value) -> None:
    """`value` into `digest`, tagged with its kind and size, so that no two values feed the
    same bytes."""
    if isinstance(value, dict):
        digest.update(b"d%d;" % len(value))
        for key in sorted(value):
            _feed(digest, key)
            _feed(digest, value[key])
        return
    if isinstance(value, (list, tuple)):
        digest.update(b"l%d;" % len(value))
        for item in value:
            _feed(digest, item)
        return
    raw = bytes(value) if isinstance(value, (bytes, bytearray)) else repr(value).encode()
    digest.update(b"%s%d;" % (b"b" if isinstance(value, (bytes, bytearray)) else b"v", len(raw)))
    digest.update(raw)


class Benchmark(Dataset):
    """A benchmark: rows read once, one Sample per item (an item can be a rotated copy of a row,
    for MMBench's circular evaluation)."""

    name = "benchmark"
    # the row columns a prediction is made from when the rows hold the images (lmms-eval's
    # parquet, MMBench's TSV): the prompt's parts and the image, never the gold answers. Their
    # content is in the predictions key (`rows_digest`), so that fixing an answer re-scores
    # without predicting again while a changed question or image is predicted anew.
    prediction_columns: tuple[str, ...] = ("question", "image")
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
                f"e.g. data.root=/data/{self.name}, or paths.eval_root=DIR holding a "
                f"{self.name}/ folder"
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
        """LLaVA's layout: the question file, one gold record per question, the image folder.
        `annotations=""` names no answer file: a split whose server holds the answers (VQAv2
        test-dev), each item's answer None (vzexp.data.submission)."""
        files = self.llava_files
        self.images = self.root / (images or files["images"])
        self.rows = read_questions(self.root / (questions or files["questions"]))
        answers = files["annotations"] if annotations is None else annotations
        golds = self.llava_golds(self.root / answers) if answers else [None] * len(self.rows)
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

    def from_llava(self, row: dict, gold: dict | None) -> dict:
        """An item from LLaVA's question line (its text is the prompt) and its annotation (None:
        no gold answer, the answer is None)."""
        answer, answers, meta = gold_answer(gold) if gold is not None else (None, None, {})
        meta.update({k: row[k] for k in ("category",) if k in row})
        if answers is not None:
            meta["answers"] = answers
        for key in ("options", "circular_id", "image_id", "question_type"):
            if key in (gold or {}):
                meta[key] = gold[key]
        image = self.images / row["image"]
        return {
            "id": str(row["question_id"]),
            "question": row["text"],
            "answer": None if gold is None else str(answer),
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

    def rows_digest(self) -> str:
        """A digest of what decides the predictions in the rows read: `prediction_columns`."""
        return columns_digest(self.rows, self.prediction_columns)

    def row_image(self, i: int, column: str = "image"):
        return image_loader(self.rows, i, column)
