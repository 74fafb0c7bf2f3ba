"""VQAv2 (val): the reader (lmms-lab/VQAv2 parquet, or LLaVA's question JSONL plus an annotation
file of question_id + answers) and the official soft accuracy over the annotators' answers.

Scorer rule: GT-Vision-Lab/VQA PythonEvaluationTools/vqaEvaluation/vqaEval.py at master (commit
a013f00; the maintainers confirm the rule in GT-Vision-Lab/VQA issue #14), after mmf's
EvalAIAnswerProcessor as LLaVA's scripts/convert_vqav2_for_submission.py applies it.

Soft VQA accuracy: with n human answers (10 in VQAv2 and TextVQA), the score of a prediction is
the mean, over the n ways of leaving one annotator out, of
``min(1, #(remaining answers equal to the prediction) / 3)``. With 10 answers that gives
1 match -> 0.3, 2 -> 0.6, 3 -> 0.9, 4 or more -> 1.0.

Record fields: "prediction"; "answers" (the human answers; read from record["answers"], else
record["meta"]["answers"]). Zero annotators score 0.0 (the official divides by their count);
no records give no metrics.
"""

from __future__ import annotations

from collections import Counter

from vzexp.data.benchmarks.common import SHORT, Benchmark, cell_text
from vzexp.data.benchmarks.records import accuracy_scorer, annotator_answers, prediction
from vzexp.data.benchmarks.vqa_normalize import clean_whitespace, evalai_normalize, vqa_process
from vzexp.data.scorer import Scorer


class VQAv2(Benchmark):
    name = "vqav2"

    def expand(self, i: int) -> list[dict]:
        row = self.rows[i]
        answers = [a["answer"] if isinstance(a, dict) else a for a in row["answers"]]
        return [
            {
                "id": str(row["question_id"]),
                "question": f"{cell_text(row['question'])}\n{SHORT}",
                "answer": cell_text(row.get("multiple_choice_answer"))
                or Counter(answers).most_common(1)[0][0],
                "meta": {"answers": answers},
                "image": self.row_image(i),
            }
        ]


def leave_one_out_accuracy(pred: str, answers: list[str]) -> float:
    """Mean over leave-one-annotator-out subsets of min(1, matches / 3); strings compared as-is."""
    if not answers:
        return 0.0
    matches = sum(a == pred for a in answers)
    total = 0.0
    for a in answers:
        # Leaving out a matching annotator removes one match from the remaining ones.
        remaining = matches - (a == pred)
        total += min(1.0, remaining / 3)
    return total / len(answers)


def vqa_accuracy(prediction: str, answers: list[str], *, evalai_preprocess: bool = True) -> float:
    """VQAv2 soft accuracy of one prediction, as LLaVA-1.5's VQAv2 numbers are produced.

    Follows GT-Vision-Lab/VQA PythonEvaluationTools/vqaEvaluation/vqaEval.py (master, commit
    a013f00; the maintainers confirm the rule in GT-Vision-Lab/VQA issue #14):

    1. prediction and answers: newlines/tabs -> spaces, strip;
    2. ONLY if the answers are not all identical, the answers and the prediction go through the
       punctuation and digit/article/contraction normalisation (when all annotators agree,
       typically on OCR-like answers, nothing is normalised and the match is literal);
    3. leave-one-annotator-out soft accuracy.

    With ``evalai_preprocess`` (the default) the prediction first goes through mmf's
    EvalAIAnswerProcessor, as LLaVA's scripts/convert_vqav2_for_submission.py does before the
    upload to the EvalAI server (which runs the official evaluation). lmms-eval's vqav2 task does
    the same. Consequences kept on purpose: "A" becomes "" (article), "man's" becomes "man 's"
    and then fails to match the annotators' "man's", and "two" becomes "2" even when the
    annotators unanimously wrote "two".

    Deviation: older, widely copied versions of vqaEval.py (e.g. salesforce/LAVIS) always
    normalise the prediction and only punctuation-process the answers; we follow master.
    """
    pred = evalai_normalize(prediction) if evalai_preprocess else prediction
    pred = clean_whitespace(pred)
    gts = [clean_whitespace(a) for a in answers]
    if len(set(gts)) > 1:
        gts = [vqa_process(a) for a in gts]
        pred = vqa_process(pred)
    return leave_one_out_accuracy(pred, gts)


def vqav2_sample(record: dict) -> float:
    return vqa_accuracy(prediction(record), annotator_answers(record))


scorer = Scorer("vqav2", vqav2_sample, accuracy_scorer(vqav2_sample))
