"""TextVQA (val): the reader (VQAv2's, with LLaVA's TextVQA file names) and mmf's TextVQA soft
accuracy.

Scorer rule: facebookresearch/mmf mmf/utils/m4c_evaluators.py `TextVQAAccuracyEvaluator`, as
haotian-liu/LLaVA llava/eval/eval_textvqa.py runs it (LLaVA's copy llava/eval/m4c_evaluator.py,
commit ce1aa08 of 2023-10-11): the prediction AND every human answer go through
EvalAIAnswerProcessor, then the leave-one-annotator-out soft accuracy (see vqav2.py).

Record fields: "prediction"; "answers" (record["answers"], else record["meta"]["answers"]).
The official class asserts exactly 10 answers; vzexp accepts any number (same formula, zero
answers score 0.0); no records give no metrics.
"""

from __future__ import annotations

from vzexp.data.benchmarks.records import accuracy_scorer, annotator_answers, prediction
from vzexp.data.benchmarks.vqa_normalize import evalai_normalize
from vzexp.data.benchmarks.vqav2 import VQAv2, leave_one_out_accuracy
from vzexp.data.scorer import Scorer


class TextVQA(VQAv2):
    name = "textvqa"
    llava_files = {
        "questions": "llava_textvqa_val_v051_ocr.jsonl",
        "annotations": "TextVQA_0.5.1_val.json",
        "images": "train_images",
    }


def textvqa_accuracy(prediction: str, answers: list[str]) -> float:
    """TextVQA soft accuracy of one prediction against the human answers."""
    return leave_one_out_accuracy(
        evalai_normalize(prediction), [evalai_normalize(a) for a in answers]
    )


def textvqa_sample(record: dict) -> float:
    return textvqa_accuracy(prediction(record), annotator_answers(record))


scorer = Scorer("textvqa", textvqa_sample, accuracy_scorer(textvqa_sample))
