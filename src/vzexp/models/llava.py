"""Run a transformers LLaVA model with an encoder-side compressor.

`install(model, compressor)` patches one model instance in place (the reference's
`visionzip(model, ...)` one-liner, for transformers' LlavaForConditionalGeneration):
  * `model.model.get_image_features` captures the selection layer, compresses and projects, so
    each image yields K tokens instead of the full grid;
  * `model.generate` first shrinks every run of image placeholders the processor expanded to the
    full grid down to K, then generates, and returns the caller's original prompt ids followed by
    the new tokens (so `out[:, inputs.input_ids.shape[1]:]` still slices the answer).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from transformers.modeling_outputs import BaseModelOutputWithPooling

from vzexp.compress.base import CompressionResult, Compressor
from vzexp.compress.none import NoCompression
from vzexp.encoders.capture import tower_info
from vzexp.errors import ConfigError


@dataclass
class CompressionStats:
    """Accumulated over calls; the engine resets it per batch."""

    images: int = 0
    visual_tokens: int = 0
    vision_seconds: float = 0.0  # tower + compression + projector
    encoder_seconds: float = 0.0  # the tower forward (with capture)
    compress_seconds: float = 0.0  # the strategy's own work (selection / merging / LLM scoring)
    llm_visual_tokens: float = 0.0  # LLM-side strategies: per image, mean over the LLM's layers
    last: CompressionResult | None = field(default=None, repr=False)

    def reset(self) -> None:
        self.images, self.visual_tokens, self.last = 0, 0, None
        self.vision_seconds = self.encoder_seconds = self.compress_seconds = 0.0
        self.llm_visual_tokens = 0.0


def feature_layer(model) -> int:
    layer = model.config.vision_feature_layer
    if not isinstance(layer, int):
        raise ConfigError(
            "model.vision_feature_layer",
            layer,
            "a single layer index (multi-layer features are not supported yet)",
        )
    return layer


def tokens_per_image(model, compressor: Compressor) -> int:
    info = tower_info(model.model.vision_tower)
    return compressor.output_tokens(info.num_patches, info.has_cls)


def full_tokens_per_image(model) -> int:
    info = tower_info(model.model.vision_tower)
    keep_cls = info.has_cls and model.config.vision_feature_select_strategy == "full"
    return info.num_patches + int(keep_cls)


def compressed_features(
    model, pixel_values: Tensor, compressor: Compressor, stats: CompressionStats | None = None
) -> CompressionResult:
    """Capture -> compress, before the projector. (B, K, d_vision). Times both into `stats`."""
    tower = model.model.vision_tower
    start = time.perf_counter()
    capture = compressor.capture(tower, pixel_values.to(dtype=tower.dtype), feature_layer(model))
    captured = time.perf_counter()
    capture.project = model.model.multi_modal_projector
    result = compressor.compress(capture)
    if stats is not None:
        stats.encoder_seconds += captured - start
        stats.compress_seconds += time.perf_counter() - captured
    return result


def shrink_placeholders(
    input_ids: Tensor,
    attention_mask: Tensor | None,
    image_token_id: int,
    full: int,
    kept: int,
    pad_id: int,
) -> tuple[Tensor, Tensor]:
    """Cut every run of `full` image placeholders to `kept`, then left-pad the rows again."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    rows = []
    for ids, mask in zip(input_ids, attention_mask):
        ids = ids[mask.bool()]
        is_image = ids == image_token_id
        # Position of each placeholder inside its run: reset at every non-image token.
        run_start = torch.cummax(
            torch.where(is_image, 0, torch.arange(1, len(ids) + 1)), dim=0
        ).values
        pos_in_run = torch.arange(1, len(ids) + 1) - run_start - 1
        n_image = int(is_image.sum())
        if n_image % full != 0 and n_image % kept == 0:
            rows.append(ids)  # already shrunk by the caller
            continue
        if n_image % full != 0:
            raise ValueError(
                f"found {n_image} image placeholders, not a multiple of the {full} per image the processor should expand to"
            )
        rows.append(ids[~is_image | (pos_in_run < kept)])
    width = max(len(r) for r in rows)
    out_ids = torch.full((len(rows), width), pad_id, dtype=input_ids.dtype)
    out_mask = torch.zeros((len(rows), width), dtype=attention_mask.dtype)
    for i, r in enumerate(rows):
        out_ids[i, width - len(r) :] = r
        out_mask[i, width - len(r) :] = 1
    return out_ids.to(input_ids.device), out_mask.to(input_ids.device)


def install(model, compressor: Compressor) -> Any:
    """Patch `model` (LlavaForConditionalGeneration) in place to run with `compressor`."""
    if hasattr(model, "_vzexp_original"):
        uninstall(model)
    inner = model.model
    stats = CompressionStats()
    full = full_tokens_per_image(model)
    kept = tokens_per_image(model, compressor)  # validates the budget against the grid now
    in_llm = compressor if compressor.kind == "llm" else None
    if in_llm is not None:
        # every visual token enters the LLM, as the model selects them; pruning happens inside
        compressor = NoCompression(
            select=model.config.vision_feature_select_strategy, layer=feature_layer(model)
        )
        kept = full
        in_llm.attach(model, full, stats)
    original = {"get_image_features": inner.get_image_features, "generate": model.generate}

    def get_image_features(
        pixel_values, vision_feature_layer=None, vision_feature_select_strategy=None, **kwargs
    ):
        start = time.perf_counter()
        result = compressed_features(model, pixel_values, compressor, stats)
        projected = inner.multi_modal_projector(result.tokens)
        stats.images += projected.shape[0]
        stats.visual_tokens += projected.shape[0] * projected.shape[1]
        stats.vision_seconds += time.perf_counter() - start
        stats.last = result
        return BaseModelOutputWithPooling(
            last_hidden_state=result.tokens, pooler_output=list(projected)
        )

    def generate(input_ids=None, attention_mask=None, **kwargs):
        if input_ids is None or kwargs.get("pixel_values") is None:
            return original["generate"](
                input_ids=input_ids, attention_mask=attention_mask, **kwargs
            )
        pad_id = model.generation_config.pad_token_id
        pad_id = pad_id if pad_id is not None else 0
        ids, mask = shrink_placeholders(
            input_ids, attention_mask, model.config.image_token_id, full, kept, pad_id
        )
        out = original["generate"](input_ids=ids, attention_mask=mask, **kwargs)
        sequences = out if isinstance(out, Tensor) else out.sequences
        # Give back the caller's prompt followed by the new tokens.
        restored = torch.cat([input_ids, sequences[:, ids.shape[1] :]], dim=1)
        if isinstance(out, Tensor):
            return restored
        out.sequences = restored
        return out

    inner.get_image_features = get_image_features
    model.generate = generate
    model._vzexp_original = original
    model.vzexp_compressor = in_llm or compressor
    model.vzexp_stats = stats
    model.vzexp_tokens_per_image = kept
    return model


def uninstall(model) -> Any:
    original = model.__dict__.pop("_vzexp_original", None)
    if original is None:
        return model
    if getattr(model.vzexp_compressor, "kind", "encoder") == "llm":
        model.vzexp_compressor.detach()
    del model.model.get_image_features
    del model.generate
    for attr in ("vzexp_compressor", "vzexp_stats", "vzexp_tokens_per_image"):
        model.__dict__.pop(attr, None)
    return model
