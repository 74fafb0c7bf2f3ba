"""The common interface of encoder-side token compressors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from torch import Tensor, nn

from vzexp.encoders.capture import LayerCapture, capture_layer
from vzexp.errors import ConfigError


@dataclass
class CompressionResult:
    """tokens: (B, K, d) features before the projector, in the order the LLM receives them.
    index: (B, n_dominant) kept sequence indices in selection order (VisionZip: CLS first, then
    the top-k patches in topk order), or None when a strategy keeps every token.
    assignment: (B, M - C) for merging strategies, the contextual target each merged token went to.
    groups: (B, T) per sequence position, -1 kept, j merged into contextual token j, -2 dropped
    (VisionZip; used for the kept-token overlays).
    positions: (B, K) the sequence index each output token stands at: a kept token's own, a
    merged token's target (VisionZip's contextual tokens), -1 for a token with no single place
    (PruMerge's extra token); None when the strategy cannot say (pooling, ToMe). Multi-view
    layouts (LLaVA-NeXT) and grid-following LLM positions (Qwen2-VL's M-RoPE) read it.
    kept_tokens: how many leading tokens are single kept tokens (the rest are merged ones)."""

    tokens: Tensor
    index: Tensor | None = None
    assignment: Tensor | None = None
    groups: Tensor | None = None
    positions: Tensor | None = None
    kept_tokens: int | None = None

    @property
    def num_tokens(self) -> int:
        return self.tokens.shape[1]


class Compressor(ABC):
    """A strategy. `layer` is the selection layer (LLaVA's hidden-states index convention).

    Encoder-side strategies (kind "encoder") turn the tower's output into fewer tokens; LLM-side
    ones (kind "llm", vzexp.compress.llm_side) let every token in and prune inside the LLM."""

    name: str = "base"
    kind: str = "encoder"
    needs_received_attention: bool = False
    needs_cls: bool = False  # ranks by CLS attention: refused on towers without CLS
    grid_based: bool = False  # needs a square patch grid (vzexp.compress.grid)
    needs_projections: bool = False  # raw q (CLS row) / k projections at the selection layer
    selects_after_projector: bool = False  # reads capture.project (cannot be cached for tuning)
    # The ids of the batch's samples, set by the evaluation loop before each batch, so that
    # random choices are drawn per sample (vzexp.compress.draws).
    sample_keys: list[str] | None = None

    def __init__(self, layer: int = -2):
        self.layer = layer

    def capture(
        self, vision_model: nn.Module, pixel_values: Tensor, feature_layer: int | None = None
    ) -> LayerCapture:
        """Run the tower once and read what `compress` needs (strategies that change the
        tower's input, such as image downsampling, override this)."""
        return capture_layer(
            vision_model,
            pixel_values,
            layer=self.layer,
            feature_layer=feature_layer,
            need_received=self.needs_received_attention,
            keep_projections=self.needs_projections,
        )

    def require_cls(self, has_cls: bool) -> None:
        """For strategies that rank by CLS attention (`needs_cls`): one clear error on a tower
        without CLS, naming the registered strategies of the same kind that need no CLS."""
        if self.needs_cls and not has_cls:
            from vzexp.compress.registry import strategies  # here: the registry imports this module

            usable = strategies(lambda cls: cls.kind == self.kind and not cls.needs_cls)
            raise ConfigError(
                "compressor",
                self.name,
                f"a tower with a CLS token ({self.name} ranks by CLS attention); for towers "
                f"without CLS use one of {', '.join(usable)}",
            )

    @abstractmethod
    def output_tokens(self, num_patches: int, has_cls: bool) -> int:
        """How many visual tokens reach the LLM for one image; raises BudgetError if impossible."""

    @abstractmethod
    def compress(self, capture: LayerCapture) -> CompressionResult:
        """Compress one batch of captured tensors."""
