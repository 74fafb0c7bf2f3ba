"""ScienceQA-IMG (test): the reader (lmms-lab/ScienceQA config ScienceQA-IMG parquet, or LLaVA's
llava_test_CQM-A.json with problems.json) and LLaVA's option-letter scorer.

Scorer rule: haotian-liu/LLaVA llava/eval/eval_science_qa.py at commit ce1aa08d (2023-10-11, the
file's last change). The rule, applied to the output as llava/eval/model_vqa_science.py writes it
(``.strip()``-ed; vzexp strips the record's prediction the same way):

1. the output IS one of the letters A-E (the script's ``--options`` default) -> that letter;
2. else, the output is at least 3 characters long, starts with one of A-E and then ". "
   ("C. cat") -> its first character;
3. else, ``re.findall(r"The answer is ([A-Z]).", output)`` has exactly ONE match -> that letter
   (any capital; the final "." matches any character but a newline, so "The answer is B," counts
   and a bare "The answer is B" at the very end does not);
4. else "FAILED".

Nothing else is rewritten: case matters, a newline is an ordinary character (so "B\\nbecause"
fails), and two "The answer is" sentences fail. `get_pred_idx` then keeps only letters among the
first len(choices) of A-E; anything else is wrong. A missing or empty output fails.

Record: "prediction", "answer" = the gold letter, meta["options"] = the option texts (their count
is len(choices); without options all five letters count).

Metrics: "accuracy" = correct / total. The script divides by the total and crashes on an empty
set; vzexp reports no metrics for no records.
"""

from __future__ import annotations

import re

from vzexp.data.benchmarks.common import LETTER, Benchmark, cell_text, lettered
from vzexp.data.benchmarks.records import accuracy_scorer, meta, prediction
from vzexp.data.scorer import Scorer

OPTIONS = ("A", "B", "C", "D", "E")  # eval_science_qa.py's --options default
ANSWER_IS = re.compile(r"The answer is ([A-Z]).")
FAILED = "FAILED"


def parse_scienceqa(text: str) -> str:
    """The letter eval_science_qa.py reads from an output, or "FAILED" (rules 1-4 above)."""
    if text in OPTIONS:
        return text
    if len(text) >= 3 and text[0] in OPTIONS and text[1:3] == ". ":
        return text[0]
    found = ANSWER_IS.findall(text)
    return found[0] if len(found) == 1 else FAILED


def pred_index(answer: str, num_choices: int) -> int:
    """eval_science_qa.py `get_pred_idx`: the letter's index among the first num_choices
    options, or -1 (a failure, or a letter past the last choice)."""
    options = OPTIONS[:num_choices]
    return options.index(answer) if answer in options else -1


def scienceqa_sample(record: dict) -> float:
    """1.0 if the parsed letter's index is the gold letter's index."""
    num_choices = len(meta(record).get("options") or OPTIONS)
    index = pred_index(parse_scienceqa(prediction(record)), num_choices)
    return float(index >= 0 and OPTIONS[index] == str(record["answer"]).strip())


scorer = Scorer("scienceqa", scienceqa_sample, accuracy_scorer(scienceqa_sample))


class ScienceQA(Benchmark):
    """lmms-lab/ScienceQA, config ScienceQA-IMG (image questions only)."""

    name = "scienceqa"
    prediction_columns = ("question", "hint", "choices", "image")
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
        context = f"Context: {cell_text(row.get('hint'))}\n" if cell_text(row.get("hint")) else ""
        return [
            {
                "id": str(row.get("id", i)),
                "question": f"{context}{cell_text(row['question'])}\n{lettered(options)}\n{LETTER}",
                "answer": chr(65 + int(row["answer"])),
                "meta": {"options": options},
                "image": self.row_image(i),
            }
        ]
