"""Run a transformers vision-language model with a compressor: `install(model, compressor)`.

`install` patches one model instance in place (the reference's `visionzip(model, ...)`
one-liner), for every family of `vzexp.models.family`:
  * `model.generate` encodes the images first (capture at the selection layer, compress, the
    model's projector), cuts each image's run of placeholders to the tokens it now has, hands the
    tokens to the model's own generate as precomputed encoder outputs, and returns the caller's
    prompt ids followed by the new tokens (so `out[:, inputs.input_ids.shape[1]:]` still slices
    the answer);
  * LLaVA-1.5's `model.model.get_image_features` is patched too, so forward() calls with
    pixel_values (training, scoring) get the compressed tokens.
This module also holds the LLaVA-1.5 family itself.
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
from vzexp.models.family import Encoded, Family, family_of, resize_image_runs


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
    kept: list[list[int]] | None = field(default=None, repr=False)  # per image, last batch
    base_rows: list[int] | None = field(default=None, repr=False)  # per image, its row of last
    lengths: list[int] = field(default_factory=list)  # per image since the reset: its tokens

    def reset(self) -> None:
        self.images, self.visual_tokens, self.last, self.kept = 0, 0, None, None
        self.base_rows, self.lengths = None, []
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


def fill_image_slots(model, input_ids: Tensor, projected: Tensor) -> Tensor:
    """input_ids' embeddings with the image placeholders replaced, in order, by the projected
    visual tokens (B, K, d_llm): what LLaVA's forward does with the image features, for callers
    that compute those tokens themselves (training on compressed images)."""
    embeds = model.get_input_embeddings()(input_ids)
    slots = (input_ids == model.config.image_token_id).unsqueeze(-1)
    return embeds.masked_scatter(slots, projected.to(embeds.dtype))


def shrink_placeholders(
    input_ids: Tensor,
    attention_mask: Tensor | None,
    image_token_id: int,
    full: int,
    kept: int,
    pad_id: int,
) -> tuple[Tensor, Tensor]:
    """Cut every run of `full` image placeholders to `kept`, then left-pad the rows again."""
    runs = int((input_ids == image_token_id).sum()) // full
    ids, mask, _ = resize_image_runs(
        input_ids, attention_mask, image_token_id, [kept] * runs, pad_id
    )
    return ids, mask


class LlavaFamily(Family):
    """LLaVA-1.5 (LlavaForConditionalGeneration): one view per image, a fixed grid, the
    model's feature layer and select strategy, its MLP projector."""

    name = "llava"
    model_types = ("llava",)
    processor_name = "LlavaProcessor"
    supports_llm_side = True

    def model_class(self):
        from transformers import LlavaForConditionalGeneration

        return LlavaForConditionalGeneration

    def check(self, model, compressor: Compressor) -> int:
        return tokens_per_image(model, compressor)

    def full_tokens(self, model) -> int:
        return full_tokens_per_image(model)

    def encode(self, model, compressor: Compressor, images: dict[str, Any], stats) -> Encoded:
        result = compressed_features(model, images["pixel_values"], compressor, stats)
        projected = model.model.multi_modal_projector(result.tokens)
        kept = None if result.index is None else result.index.tolist()
        rows = list(range(projected.shape[0]))
        return Encoded(tokens=list(projected), kept=kept, last=result, base_rows=rows)

    def patch(self, model, compressor: Compressor, stats) -> dict[str, Any]:
        inner = model.model

        # forward() calls with pixel_values (training, scoring) get the compressed tokens too
        def get_image_features(
            pixel_values, vision_feature_layer=None, vision_feature_select_strategy=None, **kwargs
        ):
            encoded = self.encode(model, compressor, {"pixel_values": pixel_values}, stats)
            count(stats, encoded)
            return BaseModelOutputWithPooling(
                last_hidden_state=encoded.last.tokens, pooler_output=encoded.tokens
            )

        return {"get_image_features": (inner, get_image_features)}


def count(stats: CompressionStats, encoded: Encoded) -> None:
    stats.images += len(encoded.tokens)
    stats.visual_tokens += sum(encoded.lengths)
    stats.lengths += encoded.lengths
    stats.last, stats.kept, stats.base_rows = encoded.last, encoded.kept, encoded.base_rows


def install(model, compressor: Compressor, layout: str = "reference") -> Any:
    """Patch `model` (a transformers model of a supported family) in place to run with
    `compressor`; `uninstall` undoes it. `layout`: how multi-view families (LLaVA-NeXT) lay out
    the kept tokens (vzexp.models.llava_next)."""
    if hasattr(model, "_vzexp_original"):
        uninstall(model)
    family = family_of(model, layout=layout)
    stats = CompressionStats()
    in_llm = compressor if compressor.kind == "llm" else None
    if in_llm is not None:
        if not family.supports_llm_side:
            raise ConfigError(
                "compressor",
                in_llm.name,
                f"an encoder-side strategy for a {family.name} model (LLM-side strategies hook "
                "LLaVA-1.5's Llama decoder only)",
            )
        # every visual token enters the LLM, as the model selects them; pruning happens inside
        compressor = NoCompression(
            select=model.config.vision_feature_select_strategy, layer=feature_layer(model)
        )
        in_llm.attach(model, family.full_tokens(model), stats)
    kept = family.check(model, compressor)  # validates the budget against the grid now
    original_generate = model.generate
    patched = {"generate": (model, None), **family.patch(model, compressor, stats)}

    def generate(input_ids=None, attention_mask=None, **kwargs):
        images = {k: kwargs.pop(k) for k in family.image_inputs if k in kwargs}
        if input_ids is None or images.get("pixel_values") is None:
            return original_generate(
                input_ids=input_ids, attention_mask=attention_mask, **images, **kwargs
            )
        start = time.perf_counter()
        encoded = family.encode(model, compressor, images, stats)
        count(stats, encoded)
        stats.vision_seconds += time.perf_counter() - start
        pad_id = model.generation_config.pad_token_id
        ids, mask, source = resize_image_runs(
            input_ids,
            attention_mask,
            model.config.image_token_id,
            encoded.lengths,
            pad_id if pad_id is not None else 0,
            family.full_lengths(model, images),
        )
        extra = family.generation_inputs(model, ids, mask, source, kwargs, images, encoded)
        out = original_generate(
            input_ids=ids,
            attention_mask=mask,
            mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=encoded.tokens)},
            **kwargs,
            **extra,
        )
        sequences = out if isinstance(out, Tensor) else out.sequences
        model.vzexp_last_sequences = sequences  # what the LLM saw (a dialogue continues it)
        # Give back the caller's prompt followed by the new tokens.
        restored = torch.cat([input_ids, sequences[:, ids.shape[1] :]], dim=1)
        if isinstance(out, Tensor):
            return restored
        out.sequences = restored
        return out

    patched["generate"] = (model, generate)
    for name, (owner, replacement) in patched.items():
        setattr(owner, name, replacement)
    model._vzexp_original = {name: owner for name, (owner, _) in patched.items()}
    model.vzexp_compressor = in_llm or compressor
    model.vzexp_family = family
    model.vzexp_stats = stats
    model.vzexp_tokens_per_image = kept
    return model


def uninstall(model) -> Any:
    patched = model.__dict__.pop("_vzexp_original", None)
    if patched is None:
        return model
    if getattr(model.vzexp_compressor, "kind", "encoder") == "llm":
        model.vzexp_compressor.detach()
    for name, owner in patched.items():
        owner.__dict__.pop(name, None)  # the instance attribute; the class's method shows again
    for attr in (
        "vzexp_compressor",
        "vzexp_family",
        "vzexp_stats",
        "vzexp_tokens_per_image",
        "vzexp_last_sequences",
    ):
        model.__dict__.pop(attr, None)
    return model
