"""One evaluation sample, as every benchmark reader yields it."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image


@dataclass
class Sample:
    """`image` is one image, or a video's frames in order (each frame an image to the model).
    `turns`, when set, makes the sample a dialogue: its questions are asked in order in one
    conversation, each answered and scored ({"question", "answer", "type"} each; `question` and
    `answer` are then the first turn's)."""

    id: str
    image: Image.Image | list[Image.Image] | None
    question: str
    answer: str
    meta: dict = field(default_factory=dict)
    turns: list[dict] | None = None

    @property
    def images(self) -> list[Image.Image]:
        return list(self.image) if isinstance(self.image, (list, tuple)) else [self.image]
