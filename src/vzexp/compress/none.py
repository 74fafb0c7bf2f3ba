"""No compression: the model's own feature selection (LLaVA 'default' drops CLS, 'full' keeps it)."""

from __future__ import annotations

from vzexp.compress.base import CompressionResult, Compressor
from vzexp.encoders.capture import LayerCapture
from vzexp.errors import ConfigError

SELECT_STRATEGIES = ("default", "full")


class NoCompression(Compressor):
    name = "none"

    def __init__(self, select: str = "default", layer: int = -2, budget: int | None = None):
        super().__init__(layer)
        if select not in SELECT_STRATEGIES:
            raise ConfigError("compressor.select", select, f"one of {', '.join(SELECT_STRATEGIES)}")
        self.select = select
        self.budget = budget  # accepted so that a `tokens` sweep composes; not used

    def output_tokens(self, num_patches: int, has_cls: bool) -> int:
        return num_patches + int(has_cls and self.select == "full")

    def compress(self, capture: LayerCapture) -> CompressionResult:
        drop_cls = capture.has_cls and self.select == "default"
        return CompressionResult(tokens=capture.hidden[:, 1:] if drop_cls else capture.hidden)
