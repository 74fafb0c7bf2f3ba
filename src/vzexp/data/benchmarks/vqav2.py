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

Test-dev (`data=vqav2_testdev`) has no published answers: the EvalAI server scores it, from the
file `submission` writes (see `write_submission`).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from vzexp.data.benchmarks.common import SHORT, Benchmark, cell_text, read_jsonl
from vzexp.data.benchmarks.records import accuracy_scorer, annotator_answers, prediction
from vzexp.data.benchmarks.vqa_normalize import clean_whitespace, evalai_normalize, vqa_process
from vzexp.data.scorer import Scorer
from vzexp.data.submission import Submission

log = logging.getLogger("vzexp")
# The question file of the whole test set (test-dev is part of it), which LLaVA's
# convert_vqav2_for_submission.py reads for the question ids of the file it uploads
LLAVA_TEST_QUESTIONS = "llava_vqav2_mscoco_test2015.jsonl"


class VQAv2(Benchmark):
    name = "vqav2"

    def expand(self, i: int) -> list[dict]:
        row = self.rows[i]
        given = row.get("answers")
        if given is None:  # test-dev / test: no answers published (answer None)
            answer, meta = None, {}
        else:
            answers = [a["answer"] if isinstance(a, dict) else a for a in given]
            answer = cell_text(row.get("multiple_choice_answer"))
            answer = answer or Counter(answers).most_common(1)[0][0]
            meta = {"answers": answers}
        return [
            {
                "id": str(row["question_id"]),
                "question": f"{cell_text(row['question'])}\n{SHORT}",
                "answer": answer,
                "meta": meta,
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


def upload_question_ids(dataset) -> list:
    """The question ids of the file EvalAI takes: those of VQAv2's whole test set when its
    question file is there (LLaVA's layout: llava_vqav2_mscoco_test2015.jsonl beside the
    test-dev file; lmms-eval's: the `test` split's parquet files, test/ or test-*.parquet),
    else those of the split read, with a warning."""
    root, llava = Path(dataset.root), getattr(dataset, "layout", None) == "llava"
    if llava and (root / LLAVA_TEST_QUESTIONS).is_file():
        rows = read_jsonl(root / LLAVA_TEST_QUESTIONS, "the VQAv2 test questions")
        return [row["question_id"] for row in rows]
    if not llava:
        import pyarrow.parquet as pq

        folder = root / "test"
        files = sorted(folder.rglob("*.parquet")) if folder.is_dir() else []
        files = files or sorted(root.rglob("test-*.parquet"))
        if files:
            columns = [pq.read_table(f, columns=["question_id"]).column(0) for f in files]
            return [qid for column in columns for qid in column.to_pylist()]
    log.warning(
        "VQAv2 submission: no question file of the whole test set (%s) under %s: the file "
        "holds the %d questions of the split read",
        LLAVA_TEST_QUESTIONS if llava else "test-*.parquet",
        root,
        len(dataset.items),
    )
    return [item["id"] for item in dataset.items]


def write_submission(records: list[dict], dataset, path: Path) -> None:
    """The file the EvalAI server scores, as haotian-liu/LLaVA
    scripts/convert_vqav2_for_submission.py at commit c121f0432da27facab705978f83c4ada465e46fd
    writes it: a JSON list of
    {"question_id": int, "answer": str}, one per question id of the test set's question file
    (`upload_question_ids`), in its order; the answer is the model's output after mmf's
    EvalAIAnswerProcessor (`evalai_normalize`), and "" for a question the run has no prediction
    of (beyond data.limit, an unreadable image, outside the split run). Where an id has several
    predictions the script keeps the last; a run has one per id."""
    predicted = {
        str(r["id"]): evalai_normalize(prediction(r)) for r in records if not r.get("skipped")
    }
    rows = [
        {"question_id": int(qid), "answer": predicted.get(str(qid), "")}
        for qid in upload_question_ids(dataset)
    ]
    path.write_text(json.dumps(rows))


submission = Submission("EvalAI (VQAv2 test-dev)", "submission.json", write_submission)
