"""GQA (testdev-balanced): the reader (lmms-lab/GQA's instructions + images parquet, or LLaVA's
question JSONL with GQA's testdev_balanced_questions.json) and exact match as LLaVA scores it.

Scorer rule: haotian-liu/LLaVA scripts/convert_gqa_for_eval.py (commit ce1aa08 of 2023-10-11)
turns the prediction into ``text.rstrip('.').lower()``, and GQA's official eval.py scores
``predicted == gold`` with the gold answer untouched (GQA's golds are lower-case already).
Record fields: "prediction", "answer". No records give no metrics.
"""

from __future__ import annotations

from pathlib import Path

from vzexp.data.benchmarks.common import (
    SHORT,
    Benchmark,
    cell_text,
    columns_digest,
    image_loader,
    read_parquet,
)
from vzexp.data.benchmarks.records import accuracy_scorer, prediction
from vzexp.data.scorer import Scorer
from vzexp.errors import MissingPathError


class GQA(Benchmark):
    """lmms-lab/GQA keeps questions and images apart: `<split>_instructions` (imageId, question,
    answer) and `<split>_images` (id, image), e.g. split=testdev_balanced."""

    name = "gqa"
    prediction_columns = ("question", "imageId")
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

    def rows_digest(self) -> str:
        """The instructions' question and image id columns, and the images they name by id."""
        return super().rows_digest() + columns_digest(self.image_rows, ("id", "image"))

    def expand(self, i: int) -> list[dict]:
        row = self.rows[i]
        k = self.image_index.get(row["imageId"])
        if k is None:
            raise MissingPathError(f"data.dataset.root: no image {row['imageId']!r} for GQA")
        return [
            {
                "id": str(row["id"]),
                "question": f"{cell_text(row['question'])}\n{SHORT}",
                "answer": cell_text(row["answer"]),
                "meta": {"image_id": row["imageId"]},
                "image": image_loader(self.image_rows, k),
            }
        ]


def gqa_match(prediction: str, answer: str) -> float:
    """1.0 if the prediction, stripped of surrounding whitespace and trailing periods and
    lower-cased, equals the gold answer."""
    return float(prediction.strip().rstrip(".").lower() == answer)


def gqa_sample(record: dict) -> float:
    return gqa_match(prediction(record), str(record["answer"]))


scorer = Scorer("gqa", gqa_sample, accuracy_scorer(gqa_sample))
