"""Official scoring rules of the VLM benchmarks of the VisionZip paper, as pure functions.

`SCORERS[name](records) -> {metric: float}` scores a whole run; `SAMPLE_SCORES[name](record)`
is the per-record score in [0, 1] the engine stores as "correct" (POPE/MME/option benchmarks:
0 or 1; VQAv2/TextVQA: the soft accuracy). A record is a dict with "id", "prediction" (the raw
model output; scorers strip surrounding whitespace as LLaVA's scripts do), "answer", for
VQAv2/TextVQA "answers" (or meta["answers"]), and "meta" (see each module's docstring).

Rates are fractions in [0, 1]; MME scores are on MME's own scale (0..200 per subtask).

| name        | follows                                                             | module  |
|-------------|---------------------------------------------------------------------|---------|
| vqav2       | GT-Vision-Lab/VQA vqaEval.py after LLaVA's EvalAIAnswerProcessor     | vqa     |
| textvqa     | mmf m4c_evaluators.py TextVQAAccuracyEvaluator (LLaVA eval_textvqa) | vqa     |
| gqa         | LLaVA convert_gqa_for_eval.py + GQA eval.py exact match             | vqa     |
| pope        | LLaVA llava/eval/eval_pope.py                                       | pope    |
| mme         | MME eval_tool/calculation.py                                        | mme     |
| scienceqa   | LLaVA llava/eval/eval_science_qa.py                                 | options |
| seed        | lmms-eval tasks/seedbench/utils.py (first character)                | options |
| mmbench     | VLMEvalKit circular eval, exact matching (no GPT judge)             | mmbench |
| mmmu        | MMMU-Benchmark/MMMU eval/eval_utils.py                              | mmmu    |
"""

from __future__ import annotations

from collections.abc import Callable

from vzexp.data.scorers.mmbench import mmbench_sample, score_mmbench
from vzexp.data.scorers.mme import mme_sample, parse_mme, score_mme
from vzexp.data.scorers.mmmu import (
    mmmu_sample,
    parse_multi_choice_response,
    parse_open_response,
    score_mmmu,
)
from vzexp.data.scorers.normalize import evalai_normalize, vqa_process
from vzexp.data.scorers.options import (
    parse_option_letter,
    parse_scienceqa_letter,
    parse_seed_letter,
    scienceqa_sample,
    score_scienceqa,
    score_seed,
    seed_sample,
)
from vzexp.data.scorers.pope import parse_pope, pope_sample, score_pope
from vzexp.data.scorers.vqa import (
    gqa_match,
    gqa_sample,
    score_gqa,
    score_textvqa,
    score_vqav2,
    textvqa_accuracy,
    textvqa_sample,
    vqa_accuracy,
    vqav2_sample,
)

SCORERS: dict[str, Callable[[list[dict]], dict[str, float]]] = {
    "vqav2": score_vqav2,
    "textvqa": score_textvqa,
    "gqa": score_gqa,
    "pope": score_pope,
    "mme": score_mme,
    "scienceqa": score_scienceqa,
    "seed": score_seed,
    "mmbench": score_mmbench,
    "mmmu": score_mmmu,
}

SAMPLE_SCORES: dict[str, Callable[[dict], float]] = {
    "vqav2": vqav2_sample,
    "textvqa": textvqa_sample,
    "gqa": gqa_sample,
    "pope": pope_sample,
    "mme": mme_sample,
    "scienceqa": scienceqa_sample,
    "seed": seed_sample,
    "mmbench": mmbench_sample,
    "mmmu": mmmu_sample,
}

__all__ = [
    "SAMPLE_SCORES",
    "SCORERS",
    "evalai_normalize",
    "gqa_match",
    "parse_mme",
    "parse_multi_choice_response",
    "parse_open_response",
    "parse_option_letter",
    "parse_pope",
    "parse_scienceqa_letter",
    "parse_seed_letter",
    "textvqa_accuracy",
    "vqa_accuracy",
    "vqa_process",
]
