"""A dialogue benchmark whose gold answers can be fixed in a file, as a file-backed benchmark's
are: `data=shapes_dialogue data.dataset._target_=dialogue_fixtures.DialoguesWithAnswers
+data.dataset.answers=FILE` (FILE: sample id -> each turn's answer; absent: the generated ones).
The questions and images stay the generated ones, so a fix leaves the predictions key alone."""

from __future__ import annotations

import json
from pathlib import Path

from vzexp.data.sample import Sample
from vzexp.data.shapes_dialogue import ShapesDialogues


class DialoguesWithAnswers(ShapesDialogues):
    def __init__(self, answers: str, **kwargs):
        super().__init__(**kwargs)
        self.answers = Path(answers)

    def __getitem__(self, i: int) -> Sample:
        sample = super().__getitem__(i)
        fixed = json.loads(self.answers.read_text()) if self.answers.is_file() else {}
        if sample.id in fixed:
            sample.turns = [{**t, "answer": a} for t, a in zip(sample.turns, fixed[sample.id])]
            sample.answer = sample.turns[0]["answer"]
        return sample
