"""Option-letter benchmarks: ScienceQA-IMG, SEED-Bench, and the rule-based letter matcher of
VLMEvalKit (used by MMBench, see mmbench.py).

Record: "prediction", "answer" = the gold letter ("A", "B", ...), meta["options"] = the option
texts in order (letters A, B, ... in that order). Each benchmark parses letters its own way, so
the same output can count differently:

================================  ======  ======  ====================  ======
output                            SQA     SEED    parse_option_letter   MMMU
================================  ======  ======  ====================  ======
"B"                               B       B       B                     B
"B."                              none    B       B                     B
"B. cat"                          B       B       B                     random
"(B)"                             none    "("     B                     B
"The answer is B."                B       "T"     B                     B
"b"                               none    "b"     none                  random
================================  ======  ======  ====================  ======

(MMMU: "B. cat" has neither "(B)" nor a space-delimited " B ", and is too short for the
option-text rule, so the official parser falls back to a random letter.)
"""

from __future__ import annotations

import re
import string

from vzexp.data.scorers._common import accuracy_scorer, meta, prediction

LETTERS = string.ascii_uppercase


def option_letters(options: list) -> list[str]:
    """Letters of the options actually present (None/NaN/empty entries end the list, as
    VLMEvalKit's build_choices skips missing columns)."""
    letters = []
    for letter, text in zip(LETTERS, options):
        if text is None or (isinstance(text, float) and text != text) or str(text) == "":
            break
        letters.append(letter)
    return letters


# --- ScienceQA ---------------------------------------------------------------------------------

_SQA_LETTERS = ("A", "B", "C", "D", "E")  # eval_science_qa.py's --options default (a list)
_SQA_ANSWER_IS_DOT = re.compile(r"The answer is ([A-E])\.")
_SQA_ANSWER_IS = re.compile(r"The answer is ([A-E])")


def parse_scienceqa_letter(text: str, num_options: int) -> str | None:
    """LLaVA's llava/eval/eval_science_qa.py: newlines become ". "; then the output must be a bare
    letter (after strip), or start with "<letter>. ", or contain "The answer is <letter>." (tried
    first) / "The answer is <letter>". Case-sensitive; a letter past the last option (or anything
    else) is a failure -> None, scored wrong."""
    text = text.replace("\n", ". ")
    letter = None
    if text.strip() in _SQA_LETTERS:
        letter = text.strip()
    elif len(text) >= 3 and text[0] in _SQA_LETTERS and text[1:3] == ". ":
        letter = text[0]
    elif "The answer is " in text:
        match = _SQA_ANSWER_IS_DOT.search(text) or _SQA_ANSWER_IS.search(text)
        letter = match.group(1) if match else None
    # get_pred_idx: only letters among the first num_options count.
    if letter in _SQA_LETTERS[:num_options]:
        return letter
    return None


def scienceqa_sample(record: dict) -> float:
    """ScienceQA(-IMG): 1 if the parsed letter is the gold letter. The engine should pass the
    IMG subset (questions with an image) to get the paper's SQA-IMG number."""
    letter = parse_scienceqa_letter(
        prediction(record), len(meta(record).get("options") or _SQA_LETTERS)
    )
    return float(letter is not None and letter == str(record["answer"]).strip())


# --- SEED-Bench --------------------------------------------------------------------------------


def parse_seed_letter(text: str) -> str:
    """lmms-eval's seedbench utils.py `seed_process_result`: strip, then the first character if the
    output is longer than one. No case folding ("b" != "B")."""
    text = text.strip()
    return text[0] if len(text) > 1 else text


def seed_sample(record: dict) -> float:
    """SEED-Bench: first-character letter == gold letter. LLaVA's
    scripts/convert_seed_for_submission.py uses the stricter raw equality ``text == answer``;
    the two agree whenever the model answers with a bare letter (LLaVA-1.5's prompt asks for
    that), and the first-character rule is the lmms-eval one."""
    return float(parse_seed_letter(prediction(record)) == str(record["answer"]).strip())


# --- VLMEvalKit rule-based matching (MMBench's exact-matching stage) ----------------------------

_STRIP_CHARS = ".()[],:;!*#{}"
_REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)


_NO_OPTION = "Z"  # VLMEvalKit's verdict "the output picks no option": final, never a gold letter


def _infer_option(answer: str, letters: list[str]) -> str | None:
    """VLMEvalKit vlmeval/utils/matching_util.py `can_infer_option`: replace the marks
    . ( ) [ ] , : ; ! * # { } by spaces, split on whitespace, and accept the answer if exactly one
    option letter appears as a whole token. A refusal phrase, or no letter but a lone "Z" token,
    gives the final verdict "Z" (no option); anything else undecided gives None."""
    if "Failed to obtain answer via API" in answer:
        return None
    if any(phrase in answer for phrase in _REFUSALS):
        return _NO_OPTION
    for ch in _STRIP_CHARS:
        answer = answer.replace(ch, " ")
    tokens = answer.split()
    found = [letter for letter in letters if letter in tokens]
    if len(found) == 1:
        return found[0]
    if not found and _NO_OPTION in tokens:
        return _NO_OPTION
    return None


def _infer_text(answer: str, letters: list[str], options: list) -> str | None:
    """VLMEvalKit `can_infer_text`: exactly one option text (lower-cased) is a substring of the
    lower-cased answer."""
    answer = answer.lower()
    found = [k for k, text in zip(letters, options) if str(text).lower() in answer]
    return found[0] if len(found) == 1 else None


def parse_option_letter(prediction: str, options: list) -> str | None:
    """The option letter VLMEvalKit's `can_infer` gets from an output without a GPT judge: the
    letter rule first, then the option-text rule; None when neither decides.

    Follows open-compass/VLMEvalKit vlmeval/utils/matching_util.py (the version where the
    "A might be a quantifier" rejection only runs with the VERBOSE environment variable, i.e. is
    off by default -- so "A dog, answer B" is ambiguous but "The answer is A" parses)."""
    letters = option_letters(options)
    text = str(prediction)
    letter = _infer_option(text, letters) or _infer_text(text, letters, options[: len(letters)])
    return None if letter == _NO_OPTION else letter


score_scienceqa = accuracy_scorer(scienceqa_sample)
score_seed = accuracy_scorer(seed_sample)
