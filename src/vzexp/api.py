"""The Python API, usable without Hydra.

from vzexp import compress_vision, visionzip
out = compress_vision(vision_model, pixel_values, strategy="visionzip", tokens=64)
out.tokens  # (B, K, d) compressed features at the selection layer, before any projector
out.index   # (B, n_dominant) kept sequence indices (CLS = 0 first, then top-k order)

model = visionzip(llava_model, dominant=54, contextual=10)  # patched in place
model.generate(**processor(images=..., text=..., return_tensors="pt"))
vzexp.api.installed(model).stats  # visual tokens and timings of the calls so far
"""

from __future__ import annotations

from torch import Tensor, nn

from vzexp.compress.base import CompressionResult
from vzexp.compress.registry import build_compressor
from vzexp.errors import ConfigError
from vzexp.models.install import install, installed, uninstall

__all__ = ["compress_vision", "installed", "restore", "visionzip"]


def compress_vision(
    vision_model: nn.Module,
    pixel_values: Tensor,
    strategy: str = "visionzip",
    tokens: int | None = None,
    dominant: int | None = None,
    contextual: int | None = None,
    layer: int = -2,
    **params,
) -> CompressionResult:
    """Compress one batch of images with a registered strategy (see `python -m vzexp.list`)."""
    if dominant is not None:
        params["dominant"] = dominant
    if contextual is not None:
        params["contextual"] = contextual
    compressor = build_compressor(strategy, budget=tokens, layer=layer, **params)
    if compressor.kind != "encoder":
        raise ConfigError(
            "strategy",
            strategy,
            "an encoder-side strategy (LLM-side ones act inside the LLM: use install)",
        )
    return compressor.compress(compressor.capture(vision_model, pixel_values))


def visionzip(model, dominant: int = 54, contextual: int = 10, layer: int = -2):
    """Patch a transformers LlavaForConditionalGeneration in place to run VisionZip; returns the
    model (`installed(model)` is the install's handle, with its statistics)."""
    compressor = build_compressor(
        "visionzip", dominant=dominant, contextual=contextual, layer=layer
    )
    return install(model, compressor).model


def restore(model):
    """Undo `visionzip(...)`/`install(...)`: the model runs with all its visual tokens again."""
    return uninstall(model)
