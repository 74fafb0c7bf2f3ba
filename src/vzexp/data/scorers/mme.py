"""MME, as its official eval_tool/calculation.py scores it (MME_Benchmark eval_tool, run by
LLaVA's scripts/v1_5/eval/mme.sh after its convert_answer_to_mme.py).

Record: "prediction", "answer" ("Yes"/"No"), meta["category"] (the subtask, e.g. "existence",
"OCR", "code_reasoning"; matched case-insensitively, reported with the official spelling) and
meta["image"] (the image id: MME asks two questions per image, one "yes" and one "no").

Parsing (calculation.py `parse_pred_ans`, after LLaVA's strip + lower-case): "yes"/"no" as is;
otherwise "yes" if "yes" occurs in the first 4 characters, else "no" if "no" does, else "other"
(always wrong). So "No." -> no, "Yes, it is" -> yes, "There is no dog" -> other, "y" -> other.

Metrics per subtask: acc = share of questions right; acc_plus = share of images whose questions
are ALL right; score = 100 * acc + 100 * acc_plus (0..200). "perception" sums the scores of the
10 perception subtasks present, "cognition" those of the 4 cognition subtasks present.

Deviation: calculation.py pairs consecutive lines of a subtask file and asserts two per image; we
group by (subtask, meta["image"]) and accept any group size (acc_plus needs all of the group
right), so a subset run does not crash -- on the full benchmark the result is identical.
"""

from __future__ import annotations

from collections import defaultdict

from vzexp.data.scorers._common import meta, prediction

PERCEPTION = (
    "existence",
    "count",
    "position",
    "color",
    "posters",
    "celebrity",
    "scene",
    "landmark",
    "artwork",
    "OCR",
)
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
_CANONICAL = {name.lower(): name for name in PERCEPTION + COGNITION}


def parse_mme(text: str) -> str:
    """'yes', 'no' or 'other' from a model output."""
    text = text.strip().lower()
    if text in ("yes", "no"):
        return text
    head = text[:4]
    if "yes" in head:
        return "yes"
    if "no" in head:
        return "no"
    return "other"


def subtask(record: dict) -> str:
    name = str(meta(record).get("category", ""))
    return _CANONICAL.get(name.lower(), name)


def mme_sample(record: dict) -> float:
    return float(parse_mme(prediction(record)) == str(record["answer"]).strip().lower())


def score_mme(records: list[dict]) -> dict[str, float]:
    if not records:
        return {}
    # subtask -> image -> [right?, ...]
    groups: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for i, r in enumerate(records):
        image = str(meta(r).get("image", r.get("id", i)))
        groups[subtask(r)][image].append(mme_sample(r) == 1.0)
    out: dict[str, float] = {}
    scores: dict[str, float] = {}
    for name, images in groups.items():
        answers = [ok for oks in images.values() for ok in oks]
        acc = sum(answers) / len(answers)
        acc_plus = sum(all(oks) for oks in images.values()) / len(images)
        scores[name] = 100 * acc + 100 * acc_plus
        out[f"{name}/acc"] = acc
        out[f"{name}/acc_plus"] = acc_plus
        out[f"{name}/score"] = scores[name]
    perception = [scores[n] for n in PERCEPTION if n in scores]
    cognition = [scores[n] for n in COGNITION if n in scores]
    if perception:
        out["perception"] = sum(perception)
    if cognition:
        out["cognition"] = sum(cognition)
    return out
