"""MMBench with circular evaluation, exact-matching only (no GPT judge).

Record: "prediction", "answer" = gold letter, meta["options"] = option texts in order,
meta["circular_id"] = the id shared by the rotated copies of one question (MMBench's TSV index
modulo 1_000_000; VLMEvalKit calls it g_index). Without a circular_id a record is its own group.

Follows open-compass/VLMEvalKit vlmeval/dataset/utils/multiple_choice.py `mcq_circular_eval`
with the "exact_matching" judge: each rotation's output is mapped to a letter by the rule-based
`can_infer` (options.parse_option_letter); a question scores 1 only if EVERY rotation maps to its
own gold letter. VLMEvalKit would send outputs that the rules cannot map to a GPT judge (and, if
that fails too, pick a random letter); without a judge such a rotation is simply wrong -- exactly
what VLMEvalKit does under `exact_matching`, but lower than a GPT-judged number when the model
answers in free text.

Metrics: "accuracy" (circular, over questions) and "accuracy_single" (plain, over rows).
"""

from __future__ import annotations

from collections import defaultdict

from vzexp.data.scorers._common import mean, meta, prediction
from vzexp.data.scorers.options import parse_option_letter


def mmbench_sample(record: dict) -> float:
    """One row (one rotation): 1 if its output maps to its gold letter."""
    letter = parse_option_letter(prediction(record), list(meta(record).get("options") or []))
    return float(letter is not None and letter == str(record["answer"]).strip())


def circular_group(record: dict, position: int) -> str:
    circular_id = meta(record).get("circular_id")
    if circular_id is None:
        return f"row:{record.get('id', position)}"
    return f"q:{circular_id}"


def score_mmbench(records: list[dict]) -> dict[str, float]:
    if not records:
        return {}
    rows = [mmbench_sample(r) for r in records]
    groups: dict[str, list[float]] = defaultdict(list)
    for i, (r, ok) in enumerate(zip(records, rows)):
        groups[circular_group(r, i)].append(ok)
    return {
        "accuracy": mean(float(all(oks)) for oks in groups.values()),
        "accuracy_single": mean(rows),
    }
