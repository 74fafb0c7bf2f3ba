"""POPE (object hallucination, yes/no): the reader (lmms-lab/POPE parquet, or LLaVA's
llava_pope_test.jsonl with coco/coco_pope_<split>.json) and the scorer.

Scorer rule: haotian-liu/LLaVA llava/eval/eval_pope.py (commit ce1aa08 of 2023-10-11).

Record: "prediction", "answer" ("yes"/"no"), meta["category"] in {"adversarial", "popular",
"random"} (optional; without it only the overall metrics are reported).

Parsing a prediction (eval_pope.py): keep the text before the first "." if there is one, delete
commas, split on single spaces; the answer is "no" if one of the words is exactly "No", "no" or
"not", else "yes". Case matters and nothing else is recognised, so "NO" and "There isn't" count as
"yes" -- faithful to the official script.

Metrics, "yes" being the positive class: accuracy, precision = TP/(TP+FP), recall = TP/(TP+FN),
f1, yes_ratio = share of "yes" predictions. Reported for all records together ("accuracy", ...)
and per split ("adversarial/accuracy", ...). LLaVA-1.5's paper number is the F1 averaged over the
three splits; that is "split_mean/f1" (and "split_mean/accuracy").

Deviations: a zero denominator gives 0.0 instead of a ZeroDivisionError; the gold label is
compared after strip/lower-case (the official: anything but exactly "no" is positive).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from vzexp.data.benchmarks.common import SHORT, Benchmark, cell_text, read_jsonl
from vzexp.data.benchmarks.records import mean, meta, prediction
from vzexp.data.scorer import Scorer
from vzexp.errors import MissingPathError

SPLITS = ("adversarial", "popular", "random")


def parse_pope(text: str) -> str:
    """'yes' or 'no' from a model output, eval_pope.py's rule."""
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def _gold(record: dict) -> str:
    return "no" if str(record["answer"]).strip().lower() == "no" else "yes"


def pope_sample(record: dict) -> float:
    return float(parse_pope(prediction(record)) == _gold(record))


def binary_metrics(preds: list[str], golds: list[str]) -> dict[str, float]:
    """accuracy/precision/recall/f1/yes_ratio with 'yes' as the positive class."""
    tp = sum(p == "yes" and g == "yes" for p, g in zip(preds, golds))
    fp = sum(p == "yes" and g == "no" for p, g in zip(preds, golds))
    tn = sum(p == "no" and g == "no" for p, g in zip(preds, golds))
    fn = sum(p == "no" and g == "yes" for p, g in zip(preds, golds))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = len(preds)
    return {
        "accuracy": (tp + tn) / n if n else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": preds.count("yes") / n if n else 0.0,
    }


def score_pope(records: list[dict]) -> dict[str, float]:
    if not records:
        return {}
    preds = [parse_pope(prediction(r)) for r in records]
    golds = [_gold(r) for r in records]
    out = binary_metrics(preds, golds)
    per_split: dict[str, dict[str, float]] = {}
    for split in SPLITS:
        idx = [i for i, r in enumerate(records) if meta(r).get("category") == split]
        if idx:
            per_split[split] = binary_metrics([preds[i] for i in idx], [golds[i] for i in idx])
            out.update({f"{split}/{k}": v for k, v in per_split[split].items()})
    if per_split:
        out["split_mean/f1"] = mean(m["f1"] for m in per_split.values())
        out["split_mean/accuracy"] = mean(m["accuracy"] for m in per_split.values())
    return out


scorer = Scorer("pope", pope_sample, score_pope)


class POPE(Benchmark):
    name = "pope"
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
                "question": f"{cell_text(row['question'])}\n{SHORT}",
                "answer": cell_text(row["answer"]).lower(),
                "meta": {"category": cell_text(row.get("category"))},
                "image": self.row_image(i),
            }
        ]
