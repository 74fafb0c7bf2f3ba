"""One evaluation sample, as every benchmark reader yields it."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image


@dataclass
class Sample:
    id: str
    image: Image.Image
    question: str
    answer: str
    meta: dict = field(default_factory=dict)
