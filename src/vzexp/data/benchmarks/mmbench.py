"""MMBench (en dev) with circular evaluation: the reader (lmms-lab/MMBench parquet, or the TSV LLaVA
evaluates on) and VLMEvalKit's exact-matching scorer (no GPT judge), in two versions.

`scorer` (the default, `data.scorer=vzexp.data.benchmarks.mmbench.scorer`) follows
open-compass/VLMEvalKit vlmeval/utils/matching_util.py at commit aca64dbb (2025-04-08), the last
version before c3371551 (2025-08-04) changed the option matching. `can_infer(output, choices)`:

1. `can_infer_option`: an output holding "Failed to obtain answer via API" gives no verdict (go
   to step 2); one holding a refusal phrase ("Cannot determine the answer", ...) gives "Z", the
   final verdict "no option". Otherwise the marks . ( ) [ ] , : ; ! * # { } become spaces, the
   text is split on whitespace, and: exactly one option letter among the tokens -> that letter;
   no option letter but a "Z" token -> "Z"; anything else -> no verdict. (The "A might be a
   quantifier" rejection runs only with the VERBOSE environment variable set, off by default.)
2. `can_infer_text`: exactly one option text, lower-cased, is a substring of the lower-cased
   output -> its letter; else no verdict.

`scorer_2026` (`data.scorer=vzexp.data.benchmarks.mmbench.scorer_2026`) follows matching_util.py
at commit 2cf2a36c (2026-06-25, the file's latest change), which adds to the above:
c3371551's rules that a lone option letter counts only if it is among the last four tokens, and
that the text rule gives no verdict for an output longer than twice the options' total length;
and a67ace50's (2026-06-17) fallback, tried after step 1's letter rules give no verdict (but not
after a "Z"): the case-insensitive regex ``(?:correct\\s+)?answer\\s+is\\s+\\**([ABCD])\\**`` names
the letter when it is an option.

Circular evaluation (vlmeval/dataset/utils/multiple_choice.py `mcq_circular_eval` with
`exact_matching`, at the same commits): a question scores 1 only if EVERY rotation's verdict is
its own gold letter; without a judge an output without a verdict is "Z", i.e. wrong (a
GPT-judged run would ask the judge instead, so free-text outputs score higher there).

The output is whitespace-stripped first (as LLaVA's generation scripts write it): the letter rules
split on whitespace anyway; the text rules see the difference only through the 2026 length limit
and option texts that begin or end with a space.

Record: "prediction", "answer" = gold letter, meta["options"] = option texts in order (a missing
one, None/NaN/"", is skipped as `build_choices` skips NaN cells), meta["circular_id"] = the id the
rotated copies of one question share (MMBench's TSV index modulo 1_000_000, VLMEvalKit's g_index;
without it a record is its own group).

Metrics: "accuracy" (circular, over questions) and "accuracy_single" (plain, over rows). No
records give no metrics.

The test split (`data=mmbench_test`) has no published answers: the OpenCompass server scores it
(circularly, over the rotated copies its TSV holds as rows of their own), from the .xlsx
`submission` writes (see `write_submission`). Each of its rows is asked once, in its own option
order.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

from vzexp.data.benchmarks.common import LETTER, Benchmark, cell_text, lettered
from vzexp.data.benchmarks.records import LETTERS, mean, meta, prediction
from vzexp.data.scorer import Scorer
from vzexp.data.submission import Submission
from vzexp.errors import ConfigError, MissingPathError

NO_OPTION = "Z"  # VLMEvalKit's verdict "the output picks no option": final, never a gold letter
STRIP_CHARS = ".()[],:;!*#{}"
API_FAILURE = "Failed to obtain answer via API"
REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
VERBOSE_ANSWER = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")


def choices(options: list) -> dict[str, str]:
    """`build_choices`: letter -> option text, for the options present (None, NaN and "" skipped,
    later letters kept)."""
    return {
        letter: str(text)
        for letter, text in zip(LETTERS, options)
        if not (text is None or (isinstance(text, float) and text != text) or str(text) == "")
    }


def infer_option(answer: str, options: dict[str, str], rule: str = "2025") -> str | None:
    """`can_infer_option`: an option letter, "Z" (no option, final) or None (no verdict)."""
    if API_FAILURE in answer:
        return None
    if any(phrase in answer for phrase in REFUSALS):
        return NO_OPTION
    spaced = answer
    for ch in STRIP_CHARS:
        spaced = spaced.replace(ch, " ")
    tokens = spaced.split()
    found = [letter for letter in options if letter in tokens]
    if len(found) == 1:
        if rule == "2025" or tokens.index(found[0]) > len(tokens) - 5:
            return found[0]
    elif not found and NO_OPTION in tokens:
        return NO_OPTION
    if rule == "2026":
        match = VERBOSE_ANSWER.search(answer)
        if match and match.group(1).upper() in options:
            return match.group(1).upper()
    return None


def infer_text(answer: str, options: dict[str, str], rule: str = "2025") -> str | None:
    """`can_infer_text`: the letter of the one option whose text is in the output, else None."""
    answer = answer.lower()
    if rule == "2026" and len(answer) > 2 * sum(len(text) for text in options.values()):
        return None
    found = [letter for letter, text in options.items() if text.lower() in answer]
    return found[0] if len(found) == 1 else None


def parse_option_letter(output: str, options: list, rule: str = "2025") -> str | None:
    """`can_infer`: the option letter an output picks under exact matching, or None (no verdict,
    or the final "no option")."""
    present = choices(options)
    text = str(output)
    letter = infer_option(text, present, rule) or infer_text(text, present, rule)
    return None if letter == NO_OPTION else letter


def circular_group(record: dict, position: int) -> str:
    circular_id = meta(record).get("circular_id")
    if circular_id is None:
        return f"row:{record.get('id', position)}"
    return f"q:{circular_id}"


def make_scorer(name: str, rule: str) -> Scorer:
    """The circular-evaluation Scorer with one version of the option matching."""

    def sample(record: dict) -> float:
        """One row (one rotation): 1 if its output maps to its gold letter."""
        options = list(meta(record).get("options") or [])
        letter = parse_option_letter(prediction(record), options, rule)
        return float(letter is not None and letter == str(record["answer"]).strip())

    def metrics(records: list[dict]) -> dict[str, float]:
        if not records:
            return {}
        rows = [sample(r) for r in records]
        groups: dict[str, list[float]] = defaultdict(list)
        for i, (r, ok) in enumerate(zip(records, rows)):
            groups[circular_group(r, i)].append(ok)
        return {
            "accuracy": mean(float(all(oks)) for oks in groups.values()),
            "accuracy_single": mean(rows),
        }

    return Scorer(name, sample, metrics)


scorer = make_scorer("mmbench", "2025")
scorer_2026 = make_scorer("mmbench_2026", "2026")


def item_id(index, shift: int) -> str:
    """The sample id of a TSV row asked with its options rotated by `shift` (0: as given)."""
    return f"{index}-r{shift}"


class MMBench(Benchmark):
    """lmms-lab/MMBench (en dev), or with layout=llava the TSV LLaVA evaluates on
    (mmbench_dev_20230712.tsv: index, question, hint, A-D, answer, category, base64 image): each
    question is asked once per rotation of its options (circular evaluation); the rotations share
    circular_id = the row's index."""

    name = "mmbench"
    prediction_columns = ("question", "hint", *"ABCDEFGH", "image")
    llava_files = {"questions": "mmbench_dev_20230712.tsv", "annotations": "", "images": ""}

    def read_llava(self, questions: str | None, annotations: str | None, images: str | None):
        """The TSV holds questions, answers and images (base64) together."""
        path = self.root / (questions or self.llava_files["questions"])
        if not path.is_file():
            raise MissingPathError(f"data.dataset.questions={str(path)!r}: no such file")
        csv.field_size_limit(1 << 30)  # base64 images are long cells
        with path.open(newline="") as f:
            self.rows = list(csv.DictReader(f, delimiter="\t"))
        self.tsv = path
        # the test split's TSV has no answer column (its server holds the answers)
        missing = {"index", "question", "A", "B", "image"} - set(self.rows[0] if self.rows else {})
        if missing:
            raise MissingPathError(
                f"data.dataset.questions={str(path)!r}: not MMBench's TSV (no {', '.join(sorted(missing))} column)"
            )
        self.items = [item for i in range(len(self.rows)) for item in self.expand(i)]

    def expand(self, i: int) -> list[dict]:
        row = self.rows[i]
        options = [cell_text(row.get(c)) for c in "ABCDEFGH" if cell_text(row.get(c))]
        answer = cell_text(row.get("answer"))
        gold = ord(answer) - 65 if answer else None
        hint = cell_text(row.get("hint"))
        items = []
        # without an answer (the test split) the row is asked as it is, for the server
        for shift in range(len(options) if answer else 1):
            rotated = options[shift:] + options[:shift]
            question = f"{hint}\n" if hint else ""
            question += f"{cell_text(row['question'])}\n{lettered(rotated)}\n{LETTER}"
            items.append(
                {
                    "id": item_id(row["index"], shift),
                    "question": question,
                    "answer": None if gold is None else chr(65 + (gold - shift) % len(options)),
                    "meta": {
                        "options": rotated,
                        "circular_id": int(row["index"]) % 1_000_000,
                        "category": cell_text(row.get("category")),
                    },
                    "image": self.row_image(i),
                }
            )
        return items


# the columns LLaVA's script drops from the TSV (names compared case-insensitively: lmms-eval's
# parquet spells one "L2-category")
DROPPED = ("hint", "category", "source", "image", "comment", "l2-category")


def submission_table(dataset):
    """The benchmark's rows as a pandas DataFrame without their images: LLaVA's TSV read with
    pandas as the script reads it, or lmms-eval's parquet rows."""
    import pandas as pd

    tsv: Path | None = getattr(dataset, "tsv", None)
    if tsv is not None:
        return pd.read_table(tsv)
    rows = dataset.rows
    return rows.remove_columns([c for c in rows.column_names if c == "image"]).to_pandas()


def write_submission(records: list[dict], dataset, path: Path) -> None:
    """The .xlsx the OpenCompass server scores, as haotian-liu/LLaVA
    scripts/convert_mmbench_for_submission.py at commit c121f0432da27facab705978f83c4ada465e46fd
    writes it: the benchmark TSV's rows less the columns hint, category, source, image, comment
    and l2-category (those present: the script would stop at a missing one), a `prediction`
    column inserted as the 7th (after index, question, A-D on MMBench's TSV), holding each row's
    output as asked in its own option order (LLaVA asks each row once; rows without a prediction
    are left empty), written with pandas' to_excel through openpyxl, without the frame's index."""
    table = submission_table(dataset)
    table = table.drop(columns=[c for c in table.columns if str(c).lower() in DROPPED])
    table.insert(min(6, len(table.columns)), "prediction", None)
    predicted = {r["id"]: prediction(r) for r in records if not r.get("skipped")}
    table["prediction"] = [predicted.get(item_id(index, 0)) for index in table["index"]]
    try:
        table.to_excel(path, index=False, engine="openpyxl")
    except ImportError:
        raise ConfigError(
            "data.submission", SUBMISSION, "the .xlsx needs openpyxl: pip install openpyxl"
        ) from None


SUBMISSION = "vzexp.data.benchmarks.mmbench.submission"
submission = Submission(
    "the OpenCompass MMBench server", "submission.xlsx", write_submission, requires=("openpyxl",)
)
