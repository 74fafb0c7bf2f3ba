"""Open-answer scorers: VQAv2, TextVQA and GQA.

Soft VQA accuracy (both VQAv2 and TextVQA): with n human answers (10 in both datasets), the score
of a prediction is the mean, over the n ways of leaving one annotator out, of
``min(1, #(remaining answers equal to the prediction) / 3)``. With 10 answers that gives
1 match -> 0.3, 2 -> 0.6, 3 -> 0.9, 4 or more -> 1.0.

Record fields: "prediction"; "answers" (the human answers; read from record["answers"], else
record["meta"]["answers"]) for VQAv2/TextVQA; "answer" for GQA.
"""

from __future__ import annotations

from vzexp.data.scorers._common import accuracy_scorer, annotator_answers, prediction
from vzexp.data.scorers.normalize import clean_whitespace, evalai_normalize, vqa_process


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
    upload to the EvalAI server (which runs the official evaluation). lmms-eval's vqav2 task did
    the same. Consequences kept on purpose: "A" becomes "" (article), "man's" becomes "man 's"
    and no longer matches the annotators' "man's", and "two" becomes "2" even when the
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


def textvqa_accuracy(prediction: str, answers: list[str]) -> float:
    """TextVQA soft accuracy: mmf's TextVQAAccuracyEvaluator (mmf/utils/m4c_evaluators.py,
    used by LLaVA's llava/eval/eval_textvqa.py): the prediction AND every human answer go through
    EvalAIAnswerProcessor, then leave-one-out soft accuracy. The official class asserts exactly
    10 answers; we accept any number (same formula)."""
    return leave_one_out_accuracy(
        evalai_normalize(prediction), [evalai_normalize(a) for a in answers]
    )


def gqa_match(prediction: str, answer: str) -> float:
    """GQA exact match as LLaVA computes it: scripts/convert_gqa_for_eval.py turns the
    prediction into ``text.rstrip('.').lower()`` and GQA's official eval.py scores
    ``predicted == gold`` with the gold answer untouched (GQA golds are lower-case already)."""
    return float(prediction.strip().rstrip(".").lower() == answer)


def vqav2_sample(record: dict) -> float:
    return vqa_accuracy(prediction(record), annotator_answers(record))


def textvqa_sample(record: dict) -> float:
    return textvqa_accuracy(prediction(record), annotator_answers(record))


def gqa_sample(record: dict) -> float:
    return gqa_match(prediction(record), str(record["answer"]))


score_vqav2 = accuracy_scorer(vqav2_sample)
score_textvqa = accuracy_scorer(textvqa_sample)
score_gqa = accuracy_scorer(gqa_sample)
