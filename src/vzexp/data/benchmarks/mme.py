"""MME (perception + cognition): the reader (lmms-lab/MME parquet, or LLaVA's llava_mme.jsonl with
MME_Benchmark_release_version's per-image txt files) and the scorer.

Scorer rule: MME's own eval_tool/calculation.py (the MME_Benchmark eval_tool of
BradyFU/Awesome-Multimodal-Large-Language-Models), as haotian-liu/LLaVA scripts/v1_5/eval/mme.sh
(commit ce1aa08 of 2023-10-11) runs it after its convert_answer_to_mme.py.

Record: "prediction", "answer" ("Yes"/"No"), meta["category"] (the subtask, e.g. "existence",
"OCR", "code_reasoning"; matched case-insensitively, reported with the official spelling) and
meta["image"] (the image id: MME asks two questions per image, one "yes" and one "no").

Parsing (calculation.py `parse_pred_ans`, after LLaVA's strip + lower-case): "yes"/"no" as is;
otherwise "yes" if "yes" occurs in the first 4 characters, else "no" if "no" does, else "other"
(always wrong). So "No." -> no, "Yes, it is" -> yes, "There is no dog" -> other, "y" -> other.

Metrics per subtask: acc = share of questions right; acc_plus = share of images whose questions
are ALL right; score = 100 * acc + 100 * acc_plus (0..200). "perception" sums the scores of the
10 perception subtasks present, "cognition" those of the 4 cognition subtasks present.

Deviation: calculation.py pairs consecutive lines of a subtask file and asserts two per image;
vzexp groups by (subtask, meta["image"]) and accepts any group size (acc_plus needs all of the
group right), so a subset run does not crash -- on the full benchmark the result is identical.
No records give no metrics.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from PIL import Image

from vzexp.data.benchmarks.common import SHORT, Benchmark, cell_text
from vzexp.data.benchmarks.records import meta, prediction
from vzexp.data.scorer import Scorer
from vzexp.errors import MissingPathError

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


scorer = Scorer("mme", mme_sample, score_mme)


class MME(Benchmark):
    """lmms-lab/MME: two yes/no questions per image; LLaVA-1.5 replaces MME's "Please answer yes
    or no." with its short-answer instruction."""

    name = "mme"

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
        question = cell_text(row["question"]).replace("Please answer yes or no.", "").strip()
        image_id = cell_text(row.get("question_id")) or str(i)
        return [
            {
                "id": f"{cell_text(row['category'])}/{image_id}/{i}",
                "question": f"{question}\n{SHORT}",
                "answer": cell_text(row["answer"]),
                "meta": {"category": cell_text(row["category"]), "image": image_id},
                "image": self.row_image(i),
            }
        ]
