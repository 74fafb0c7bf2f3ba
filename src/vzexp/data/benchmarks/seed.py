"""SEED-Bench (image questions): the reader (lmms-lab/SEED-Bench parquet, or LLaVA's
llava-seed-bench.jsonl with SEED-Bench.json) and two option-letter scorers.

`scorer` (the default, `data.scorer=vzexp.data.benchmarks.seed.scorer`) follows lmms-eval's
lmms_eval/tasks/seedbench/utils.py at commit e3c9cd6a (2024-07-25, "Fix seedbench aggregation";
the rule is unchanged at c7eaef37 of 2026-01-24, the file's latest change):
`seed_process_result` strips the output and keeps its first character when it is longer than
one; `seed_aggregation_result` counts it right when ``pred.lower().strip() ==
answer.lower().strip()``. So "B", "b", "B. cat", "b) cat" and "B\\nC" all read B, "(B)" reads
"(" and an empty output reads "" (wrong).

`llava_scorer` (`data.scorer=vzexp.data.benchmarks.seed.llava_scorer`) follows haotian-liu/LLaVA
scripts/convert_seed_for_submission.py at commit ce1aa08d (2023-10-11): right only when the
output, ``.strip()``-ed by llava/eval/model_vqa_loader.py, equals the gold letter exactly
(``row['text'] == question_data['answer']``), so "b" and "B." are wrong.

Record: "prediction", "answer" = the gold letter, meta["options"] = the four option texts.
Metrics: "accuracy" = correct / total (both scripts divide by the count and crash on an empty
set; vzexp reports no metrics for no records).
"""

from __future__ import annotations

from vzexp.data.benchmarks.common import LETTER, Benchmark, cell_text, lettered
from vzexp.data.benchmarks.records import accuracy_scorer, prediction
from vzexp.data.scorer import Scorer


def parse_seed_letter(text: str) -> str:
    """lmms-eval's `seed_process_result`: strip, then the first character if longer than one."""
    text = text.strip()
    return text[0] if len(text) > 1 else text


def seed_sample(record: dict) -> float:
    """lmms-eval: the parsed character equals the gold letter, both lower-cased and stripped."""
    pred = parse_seed_letter(prediction(record))
    return float(pred.lower().strip() == str(record["answer"]).lower().strip())


def llava_seed_sample(record: dict) -> float:
    """LLaVA: the stripped output equals the gold answer exactly."""
    return float(prediction(record) == str(record["answer"]))


scorer = Scorer("seed", seed_sample, accuracy_scorer(seed_sample))
llava_scorer = Scorer("seed_llava", llava_seed_sample, accuracy_scorer(llava_seed_sample))


class SEEDBench(Benchmark):
    """lmms-lab/SEED-Bench, image questions (data_type == "image")."""

    name = "seed"
    prediction_columns = ("question", *(f"choice_{c}" for c in "abcd"), "data_type", "image")
    # LLaVA: llava-seed-bench.jsonl (image questions) + SEED-Bench.json ({"questions": [...]})
    llava_files = {
        "questions": "llava-seed-bench.jsonl",
        "annotations": "SEED-Bench.json",
        "images": ".",
    }

    def expand(self, i: int) -> list[dict]:
        row = self.rows[i]
        if cell_text(row.get("data_type", "image")) != "image":
            return []
        options = [cell_text(row[f"choice_{c}"]) for c in "abcd"]
        return [
            {
                "id": str(row["question_id"]),
                "question": f"{cell_text(row['question'])}\n{lettered(options)}\n{LETTER}",
                "answer": cell_text(row["answer"]),
                "meta": {"options": options},
                "image": self.row_image(i),
            }
        ]
