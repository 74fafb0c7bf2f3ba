"""Qwen2-VL and Qwen2.5-VL: a tower without CLS, a 2x2 patch merger, rotary (t, h, w) positions.

The LLM's visual tokens are the merger's outputs, one per 2x2 group of patches, so strategies act
on those: each merged token's score is the attention its four patches receive at the selection
block (mean over heads and over the queries that see them: the whole image, or the window at
Qwen2.5-VL's windowed blocks), and its key the mean of their keys (before the rotary embedding:
content, not place). The merger's outputs are what is kept and merged (they are already in the
LLM's space; there is no separate projector).

Positions: Qwen's M-RoPE gives image token j the (t, h, w) of its grid cell and the text after
the image continues from the image's span. A kept token keeps its cell's position, a merged
(contextual) token takes its target's, and the text after the image keeps the position it has with
all tokens (`positions`, below), so the LLM sees the surviving tokens where they were.

`tokens` is the budget per image (a video frame is an image); an image with fewer tokens than the
budget (dynamic resolution) keeps them all."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from vzexp.compress.base import CompressionResult, Compressor
from vzexp.compress.none import NoCompression
from vzexp.encoders.capture import LayerCapture, resolve_layer
from vzexp.errors import ConfigError
from vzexp.models.family import Encoded, Family, TowerShape, gather_positions

QUERY_BLOCK = 512  # queries per step when summing attention received (bounds the score memory)


def received_attention(q: Tensor, k: Tensor, cu_seqlens: Tensor, scale: float) -> Tensor:
    """(T,) attention each token receives, averaged over heads and the queries of its chunk
    (cu_seqlens: the block's attention chunks). q, k: (T, H, hd) after the rotary embedding."""
    out = torch.zeros(q.shape[0], dtype=torch.float32, device=q.device)
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        keys = k[start:end].float()
        total = torch.zeros(end - start, dtype=torch.float32, device=q.device)
        for s in range(start, end, QUERY_BLOCK):
            queries = q[s : min(s + QUERY_BLOCK, end)].float()
            probs = (torch.einsum("qhd,khd->hqk", queries, keys) * scale).softmax(dim=-1)
            total += probs.sum(dim=(0, 1))
        out[start:end] = total / (q.shape[1] * (end - start))
    return out


def refuse_grid_strategies(compressor: Compressor, model: str) -> None:
    """Pooling and downsampling to a square grid do not apply where tokens follow each image.
    The error names the registered strategies of the same kind that fit such a tower: no square
    grid needed (`grid_based`) and no CLS needed (these towers have none)."""
    if getattr(compressor, "grid_based", False):
        from vzexp.compress.registry import strategies

        usable = strategies(
            lambda cls: cls.kind == compressor.kind and not cls.grid_based and not cls.needs_cls
        )
        raise ConfigError(
            "compressor",
            compressor.name,
            f"a strategy that needs no square patch grid for {model} (its tokens follow each "
            f"image's aspect ratio): one of {', '.join(usable)}; "
            "for a lower resolution set the processor's max_pixels",
        )


class Qwen2VLFamily(Family):
    name = "qwen2_vl"
    model_types = ("qwen2_vl",)
    processor_name = "Qwen2VLProcessor"
    image_inputs = ("pixel_values", "image_grid_thw")
    windowed = False  # Qwen2.5-VL: patches reordered into windows inside the tower

    def model_class(self):
        from transformers import Qwen2VLForConditionalGeneration

        return Qwen2VLForConditionalGeneration

    def vision_tower(self, model):
        return model.model.visual

    def tower_has_cls(self, vision_config) -> bool:
        return False  # the merger's outputs are patches only

    def tower_shape(self, vision_config, image_size: int | None = None) -> TowerShape:
        return TowerShape(None, vision_config.depth, False)  # the grid follows each image

    def check(self, model, compressor: Compressor) -> None:
        refuse_grid_strategies(compressor, self.name)
        resolve_layer(compressor.layer, len(self.vision_tower(model).blocks))
        compressor.output_tokens(1 << 16, False)  # the budget's own consistency
        return None  # tokens per image follow each image's size

    def full_lengths(self, model, images: dict[str, Any]) -> list[int]:
        return (images["image_grid_thw"].prod(-1) // self.merge_unit(model)).tolist()

    def merge_unit(self, model) -> int:
        return model.config.vision_config.spatial_merge_size**2

    def window_order(self, visual, grid_thw: Tensor) -> Tensor | None:
        return None

    def capture(
        self, model, pixel_values: Tensor, grid_thw: Tensor, layer: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Run the tower once: (merged tokens (N, d_llm), per-token attention received (N,),
        per-token mean key (N, hd)), all images concatenated in their natural order."""
        from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb_vision

        visual = self.vision_tower(model)
        block = visual.blocks[resolve_layer(layer, len(visual.blocks))]
        store: dict[str, Any] = {}

        def keep_inputs(_module, args, kwargs):
            store["x"] = args[0] if args else kwargs["hidden_states"]
            store["cu"], store["pe"] = kwargs["cu_seqlens"], kwargs["position_embeddings"]

        handle = block.attn.register_forward_pre_hook(keep_inputs, with_kwargs=True)
        try:
            merged = visual(pixel_values.to(visual.dtype), grid_thw=grid_thw).pooler_output
        finally:
            handle.remove()
        attn, x = block.attn, store["x"]
        t = x.shape[0]
        q, k, _ = attn.qkv(x).reshape(t, 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
        keys = k.mean(dim=1)  # (T, hd), before the rotary embedding
        cos, sin = store["pe"]
        q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
        received = received_attention(q, k, store["cu"], attn.scaling)
        unit = self.merge_unit(model)
        received = received.view(-1, unit).sum(dim=1)
        keys = keys.reshape(-1, unit, keys.shape[-1]).mean(dim=1)
        order = self.window_order(visual, grid_thw)
        if order is not None:  # the block saw windows: back to the natural order
            back = torch.argsort(order)
            received, keys = received[back], keys[back]
        return merged, received.to(merged.dtype), keys.to(merged.dtype)

    def encode(self, model, compressor: Compressor, images: dict[str, Any], stats) -> Encoded:
        import time

        grid_thw = images["image_grid_thw"]
        start = time.perf_counter()
        layer = getattr(compressor, "layer", -2)
        merged, received, keys = self.capture(model, images["pixel_values"], grid_thw, layer)
        captured = time.perf_counter()
        sizes = (grid_thw.prod(-1) // self.merge_unit(model)).tolist()
        tokens, positions, kept, last = [], [], [], None
        budget = getattr(compressor, "budget", None)
        for h, r, kk in zip(merged.split(sizes), received.split(sizes), keys.split(sizes)):
            n = h.shape[0]
            if isinstance(compressor, NoCompression) or (budget is not None and n < budget):
                tokens.append(h)
                positions.append(torch.arange(n, device=h.device))
                kept.append(list(range(n)))
                continue
            capture = LayerCapture(
                hidden=h[None],
                keys=kk[None],
                cls_attention=None,
                received_attention=r[None],
                has_cls=self.tower_has_cls(model.config.vision_config),
                project=lambda x: x,  # merger outputs are in the LLM's space already
            )
            last = compressor.compress(capture)
            tokens.append(last.tokens[0])
            positions.append(self.token_cells(last, n))
            kept.append([] if last.index is None else last.index[0].tolist())
        if stats is not None:
            stats.encoder_seconds += captured - start
            stats.compress_seconds += time.perf_counter() - captured
        return Encoded(tokens=tokens, kept=kept, positions=positions, last=last)

    @staticmethod
    def token_cells(result: CompressionResult, n: int) -> Tensor:
        """The grid cell each output token stands at (for its rotary position)."""
        k = result.tokens.shape[1]
        if result.positions is None:
            # the strategy does not say (ToMe): its tokens spread evenly over the image's cells
            return torch.linspace(0, n - 1, k).round().long()
        cells = result.positions[0].clone()
        cells[cells < 0] = n - 1  # a token with no single place (an extra merged one): the end
        return cells

    def generation_inputs(
        self,
        model,
        input_ids: Tensor,
        attention_mask: Tensor,
        source: Tensor,
        kwargs: dict[str, Any],
        images: dict[str, Any],
        encoded: Encoded,
    ) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if kwargs.get("mm_token_type_ids") is not None:
            extra["mm_token_type_ids"] = gather_positions(kwargs.pop("mm_token_type_ids"), source)
        position_ids, deltas = self.positions(
            model, input_ids, attention_mask, images["image_grid_thw"], encoded.positions
        )
        model.model.rope_deltas = deltas
        extra["position_ids"] = position_ids
        return extra

    def positions(
        self,
        model,
        input_ids: Tensor,
        attention_mask: Tensor,
        grid_thw: Tensor,
        cells: list[Tensor],
    ) -> tuple[Tensor, Tensor]:
        """(4, B, T) position ids of the cut rows, as generate() prepares them (text positions,
        then t, h, w), and the rope deltas for decoding. Image k's tokens take the positions of
        their cells in the full grid; the text after an image continues where it would with all
        tokens."""
        merge = model.config.vision_config.spatial_merge_size
        image_id = model.config.image_token_id
        text = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
        mrope = torch.zeros(3, *input_ids.shape, dtype=torch.long, device=input_ids.device)
        deltas = []
        image = 0
        for row in range(input_ids.shape[0]):
            valid = attention_mask[row].bool()
            ids = input_ids[row, valid]
            parts, pos, k = [], 0, 0
            while k < len(ids):
                if ids[k] != image_id:
                    end = k
                    while end < len(ids) and ids[end] != image_id:
                        end += 1
                    parts.append(torch.arange(pos, pos + end - k).view(1, -1).expand(3, -1))
                    pos += end - k
                    k = end
                    continue
                thw = grid_thw[image]
                full = model.model.get_vision_position_ids(pos, thw, 1, merge, device=ids.device)
                parts.append(full[:, cells[image].to(full.device)])
                k += len(cells[image])
                pos += int(max(thw[1], thw[2])) // merge
                image += 1
            row_positions = torch.cat(parts, dim=1).to(mrope.device)
            mrope[:, row, valid] = row_positions
            deltas.append(int(row_positions.max()) + 1 - len(ids))
        deltas = torch.tensor(deltas, device=input_ids.device).unsqueeze(1)
        return torch.cat([text[None], mrope]), deltas


class Qwen2_5_VLFamily(Qwen2VLFamily):
    """Qwen2.5-VL: most tower blocks attend within windows (config.fullatt_block_indexes attend
    to the whole image); the tower reorders patches into windows, which the capture undoes."""

    name = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)
    processor_name = "Qwen2_5_VLProcessor"
    windowed = True

    def model_class(self):
        from transformers import Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration

    def window_order(self, visual, grid_thw: Tensor) -> Tensor:
        from transformers.vision_utils import get_vision_window_index

        index, _ = get_vision_window_index(
            grid_thw,
            spatial_merge_size=visual.spatial_merge_size,
            window_size=visual.window_size,
            patch_size=visual.patch_size,
        )
        return index
