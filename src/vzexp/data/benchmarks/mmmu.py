"""MMMU (validation): the reader (lmms-lab/MMMU parquet; first image only, "<image N>" marks
removed) and the scorer.

Scorer rule: MMMU-Benchmark/MMMU eval/eval_utils.py at commit 78e9c75 (2023-12-16; the same file
is mmmu/utils/eval_utils.py from aa9b70d on): parse_multi_choice_response, parse_open_response,
eval_multi_choice, eval_open, as driven by eval/main_parse_and_eval.py.

Record: "id", "prediction", "answer" (multiple-choice: the gold letter; open: the gold string, or a
list of accepted strings -- a string that spells a Python list, e.g. "['0.5', '1/2']", as in the
HF dataset, is read as that list, matching the official answer_dict_val.json), meta["options"]
(option texts in order, letters A, B, ...) and meta["question_type"] in {"multiple-choice",
"open"} (default: "multiple-choice" if there are options, else "open").

Multiple choice: strip , . ! ? ; : ' from both ends (one mark after the other), pad with spaces;
candidates are the letters written "(X)"; if none, letters written " X "; if none and the output
has more than 5 words, the options whose text occurs in it (case-insensitive). Several candidates
-> the one occurring last; none -> a random letter.

Open: take the tail after the last "could be / so / is / thus / therefore / final / answer /
result" (and "=" in the last line) of each line, keep the shortest such tail per line (the whole
output if there is none), add every number found in them, then normalise: numbers (commas
dropped) become floats rounded to 2 decimals, other strings are lower-cased (one-character
strings become " x" and "x " to avoid trivial hits). Correct if a predicted float equals a gold
float, or a gold string is a substring of a predicted string. So "3.0" matches gold "3", and
"The answer is 3" matches too.

Deviation: the official random fallback draws from one module-level `random` seeded 42 at
import, so the letter depends on the order records are scored. vzexp draws from
``random.Random(42 + crc32(record id))``: deterministic per record, independent of order and
batching, and still uniform over the options. Where the official code crashes: a
multiple-choice record without options scores 0 (random.choice of nothing raises), and no records
give no metrics (the accuracy divides by the count).
"""

from __future__ import annotations

import ast
import random
import re
import zlib

from vzexp.data.benchmarks.common import LETTER, SHORT, Benchmark, cell_text, lettered
from vzexp.data.benchmarks.records import LETTERS, meta, prediction
from vzexp.data.scorer import Scorer

SEED = 42


def record_rng(record_id: object) -> random.Random:
    return random.Random(SEED + zlib.crc32(str(record_id).encode("utf-8")))


# --- multiple choice ---------------------------------------------------------------------------


def parse_multi_choice_response(
    response: str, all_choices: list[str], index2ans: dict[str, str], rng: random.Random
) -> str:
    for mark in ",.!?;:'":
        response = response.strip(mark)
    response = f" {response} "  # spaces so " B " only matches a standalone letter

    candidates = [c for c in all_choices if f"({c})" in response]
    bracketed = bool(candidates)
    by_text = False
    if not candidates:
        candidates = [c for c in all_choices if f" {c} " in response]
    if not candidates and len(response.split()) > 5:
        candidates = [k for k, text in index2ans.items() if text.lower() in response.lower()]
        by_text = True

    if not candidates:
        return rng.choice(all_choices)
    if len(candidates) == 1:
        return candidates[0]
    # Several: the one whose mention starts last (first of equals, like numpy.argmax).
    if by_text:
        positions = [response.lower().rfind(index2ans[c].lower()) for c in candidates]
    elif bracketed:
        positions = [response.rfind(f"({c})") for c in candidates]
    else:
        positions = [response.rfind(f" {c} ") for c in candidates]
    return candidates[positions.index(max(positions))]


# --- open --------------------------------------------------------------------------------------

_NUMBER_WITH_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_NUMBER_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_NUMBER_PLAIN = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")
# The official split pattern; the text is lower-cased first, so "(?=[A-Z])" never holds and in
# effect only newlines split. Kept as written to stay faithful.
_SENTENCE_SPLIT = re.compile(r"\.\s(?=[A-Z])|\n")
_KEY_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")
_TRIVIAL = {":", ",", ".", "!", "?", ";", "'"}


def is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def normalize_str(text: str) -> list[str | float]:
    text = text.strip()
    if is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


def extract_numbers(text: str) -> list[str]:
    return (
        _NUMBER_WITH_COMMAS.findall(text)
        + _NUMBER_SCIENTIFIC.findall(text)
        + _NUMBER_PLAIN.findall(text)
    )


def _key_subresponses(response: str) -> list[str]:
    response = response.strip().strip(".").lower()
    lines = _SENTENCE_SPLIT.split(response)
    keys = []
    for i, line in enumerate(lines):
        indicators = _KEY_INDICATORS + (("=",) if i == len(lines) - 1 else ())
        shortest = ""
        for indicator in indicators:
            if indicator in line:
                tail = line.split(indicator)[-1].strip()
                # The official replaces an empty/unset candidate by any later one.
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in _TRIVIAL:
            keys.append(shortest)
    return keys or [response]


def parse_open_response(response: str) -> list[str | float]:
    keys = _key_subresponses(response)
    candidates = list(keys)
    for key in keys:
        candidates.extend(extract_numbers(key))
    normalized = [value for c in candidates for value in normalize_str(c)]
    return list(dict.fromkeys(normalized))  # dedupe (the official uses set(); order is moot)


def eval_open(gold: list[str], parsed: list[str | float]) -> bool:
    answers = [value for g in gold for value in normalize_str(g)]
    for pred in parsed:
        if isinstance(pred, str):
            if any(isinstance(a, str) and a in pred for a in answers):
                return True
        elif pred in answers:
            return True
    return False


# --- records -----------------------------------------------------------------------------------


def _gold(record: dict) -> list[str]:
    answer = record["answer"]
    if isinstance(answer, str) and answer.strip().startswith("["):
        try:
            answer = ast.literal_eval(answer.strip())
        except (ValueError, SyntaxError):
            pass
    if isinstance(answer, (list, tuple)):
        return [str(a) for a in answer]
    return [str(answer)]


def question_type(record: dict) -> str:
    qtype = meta(record).get("question_type")
    if qtype:
        return str(qtype)
    return "multiple-choice" if meta(record).get("options") else "open"


def mmmu_sample(record: dict) -> float:
    response = prediction(record)
    if question_type(record) == "multiple-choice":
        options = [str(o) for o in meta(record).get("options") or []]
        letters = list(LETTERS[: len(options)])
        if not letters:
            return 0.0  # nothing to choose from (the official would crash on random.choice)
        index2ans = dict(zip(letters, options))
        rng = record_rng(record.get("id"))
        letter = parse_multi_choice_response(response, letters, index2ans, rng)
        return float(letter in _gold(record))
    return float(eval_open(_gold(record), parse_open_response(response)))


def score_mmmu(records: list[dict]) -> dict[str, float]:
    if not records:
        return {}
    by_type: dict[str, list[float]] = {}
    for r in records:
        by_type.setdefault(question_type(r), []).append(mmmu_sample(r))
    every = [s for scores in by_type.values() for s in scores]
    out = {"accuracy": sum(every) / len(every)}
    for qtype, scores in by_type.items():
        out[f"{qtype}/accuracy"] = sum(scores) / len(scores)
    return out


scorer = Scorer("mmmu", mmmu_sample, score_mmmu)


class MMMU(Benchmark):
    """lmms-lab/MMMU (validation): the first image only (one image per sample here); the
    question's "<image N>" marks are removed."""

    name = "mmmu"
    prediction_columns = ("question", "options", "question_type", "image_1")

    def expand(self, i: int) -> list[dict]:
        row = self.rows[i]
        question = re.sub(r"\s*<image \d+>", "", cell_text(row["question"])).strip()
        raw = row.get("options")
        options = ast.literal_eval(raw) if isinstance(raw, str) and raw.strip() else (raw or [])
        kind = cell_text(row.get("question_type")) or "multiple-choice"
        if kind == "multiple-choice":
            prompt = f"{question}\n{lettered(options)}\n{LETTER}"
        else:
            prompt = f"{question}\n{SHORT}"
        return [
            {
                "id": cell_text(row["id"]),
                "question": prompt,
                "answer": cell_text(row["answer"]),
                "meta": {"options": options, "question_type": kind},
                "image": self.row_image(i, "image_1"),
            }
        ]
