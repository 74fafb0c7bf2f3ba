"""The VQA answer normalisation, as the official VQA evaluation and EvalAI apply it (shared by
the VQAv2 and TextVQA scorers).

Two entry points:

* `vqa_process(text)`: the official VQA evaluation's two steps, `processPunctuation` then
  `processDigitArticle` (GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py).
* `evalai_normalize(text)`: mmf's `EvalAIAnswerProcessor` (facebookresearch/mmf,
  mmf/utils/m4c_evaluators.py, copied by LLaVA as llava/eval/m4c_evaluator.py): lower-case, drop
  every "," and "?", split "'s" off as " 's", then the two steps above.

The rules, in words:

* punctuation: for each of ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !`` -- if the ORIGINAL text
  has that mark next to a space, or the text has a digit-comma-digit anywhere ("3,000"), the mark
  is deleted; otherwise it becomes a space ("red/white" -> "red white"). Then every "." not followed
  by a digit is deleted ("yes." -> "yes", "3.5" kept). ":" and "'" are not in the list.
* words: lower-case, split on whitespace, number words zero..ten (and "none") -> digits, drop
  the articles a/an/the, restore the apostrophe of common contractions ("dont" -> "don't"), join
  with single spaces.

Faithful quirks kept on purpose (they move real scores):

* The period rule runs through ``pattern.sub("", text, re.UNICODE)`` in the official code, where
  the flag lands in the *count* argument: at most 32 periods are removed. We keep that cap.
* The official period pattern ``(?!<=\\d)(\\.)(?!\\d)`` has a mistyped look-behind (it is a
  look-ahead for the literal "<="), so a period *after* a digit is removed too ("3." -> "3").
* In the official contraction table a few keys start with a capital ("Im", "Ive", "Id've") and can
  never match (lookup happens after lower-casing); they are left out here with no effect, as are
  the identity entries ("let's", "she's"). The odd entry "somebody'd" -> "somebodyd" is kept.
"""

from __future__ import annotations

import re

# Marks handled by the punctuation rule (the official list since the Python 3 version of
# vqaEval.py, identical to mmf's EvalAIAnswerProcessor.PUNCTUATIONS).
PUNCTUATION: tuple[str, ...] = tuple(';/[]"{}()=+\\_-><@`,?!')

NUMBER_WORDS: dict[str, str] = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}

ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

# Contractions with one apostrophe: the table maps the apostrophe-free spelling to these.
_ONE_APOSTROPHE = (
    "ain't aren't can't could've couldn't didn't doesn't don't hadn't hasn't haven't he'd he's "
    "how'd how'll how's isn't it'd it'll ma'am mightn't might've mustn't must've needn't not've "
    "o'clock oughtn't shan't should've shouldn't somebody'll somebody's someone'd someone'll "
    "someone's something'd something'll that's there'd there're there's they'd they'll they're "
    "they've 'twas wasn't we've weren't what'll what're what's what've when's where'd where's "
    "where've who'd who'll who's who've why'll why're why's won't would've wouldn't y'all you'd "
    "you'll you're you've"
).split()

# Contractions with two or more apostrophes: the table maps each spelling that misses exactly
# one of the apostrophes to these ("couldnt've" and "couldn'tve" -> "couldn't've").
_SEVERAL_APOSTROPHES = (
    "couldn't've hadn't've he'd've it'd've mightn't've she'd've shouldn't've somebody'd've "
    "someone'd've something'd've there'd've they'd've we'd've who'd've wouldn't've you'd've "
    "y'all'll y'all'd've 'ow's'at"
).split()


def _contraction_table() -> dict[str, str]:
    table = {word.replace("'", ""): word for word in _ONE_APOSTROPHE}
    for word in _SEVERAL_APOSTROPHES:
        for i, ch in enumerate(word):
            if ch == "'":
                table[word[:i] + word[i + 1 :]] = word
    table["somebody'd"] = "somebodyd"  # sic: the official table has this one backwards
    return table


CONTRACTIONS: dict[str, str] = _contraction_table()

_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# Equivalent to the official "(?!<=\d)(\.)(?!\d)": its first group never blocks a match.
_PERIOD = re.compile(r"\.(?!\d)")
_OFFICIAL_PERIOD_CAP = 32  # re.UNICODE passed positionally as `count` in the official code


def process_punctuation(text: str) -> str:
    """The official `processPunctuation` (see the module docstring)."""
    out = text
    strip_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    for mark in PUNCTUATION:
        # The test looks at the original text, the replacement acts on the running result.
        if strip_all or (mark + " ") in text or (" " + mark) in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out, count=_OFFICIAL_PERIOD_CAP)


def process_digit_article(text: str) -> str:
    """The official `processDigitArticle`: lower-case, number words, articles, contractions."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def clean_whitespace(text: str) -> str:
    """Newlines and tabs to spaces, then strip: what the official eval does before anything."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def vqa_process(text: str) -> str:
    """Both official VQA steps (punctuation, then digits/articles/contractions)."""
    return process_digit_article(process_punctuation(text))


def evalai_normalize(text: str) -> str:
    """mmf's `EvalAIAnswerProcessor.__call__` (used by LLaVA for VQAv2 submissions and TextVQA)."""
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    return vqa_process(clean_whitespace(text))
