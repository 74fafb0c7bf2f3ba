"""The LLaVA-1.5 family (LlavaForConditionalGeneration), and the helpers LLaVA-style models share:
the compressed features before the projector, and the placeholders filled or cut to match them.
Installing a compressor on any family is `vzexp.models.install.install`."""

from __future__ import annotations

import time
from typing import Any

from torch import Tensor
from transformers.modeling_outputs import BaseModelOutputWithPooling

from vzexp.compress.base import CompressionResult, Compressor
from vzexp.models.family import Encoded, Family
from vzexp.models.install import (
    CompressionStats,
    count,
    feature_layer,
    full_tokens_per_image,
    tokens_per_image,
)


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
