"""Model families: what differs between transformers' vision-language classes, behind one interface.

Every family runs the same way under `vzexp.models.install.install`: at `generate`, the images are
encoded first (tower + capture at one layer + compressor + the model's own projector or merger),
each image's run of placeholder tokens is cut to the number of tokens it now has, and the model's
own `generate` receives the tokens as precomputed encoder outputs (transformers'
`mm_encoder_outputs`), so the LLM, its KV cache and decoding are the model's own. A family says
how to encode (views, layouts, merged patches) and, where the LLM needs more than ids and a mask
(Qwen2-VL's (t, h, w) rotary positions), what else to pass.

Families: llava (LLaVA-1.5), llava_next (anyres), llava_onevision (SigLIP, anyres), qwen2_vl and
qwen2_5_vl (no CLS, 2x2 patch merger, M-RoPE). `family_of(model)` picks one by config.model_type.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from vzexp.compress.base import CompressionResult, Compressor
from vzexp.errors import ConfigError
from vzexp.models.registry import FAMILIES


@dataclass
class Encoded:
    """One batch's images, encoded and compressed, in the LLM's input space.

    tokens: per image, (k_i, d_llm), in the order the LLM receives them.
    kept: per image, the strategy's kept tower indices (for the predictions' `kept` records), or
        None when it keeps everything.
    positions: per image, (k_i,) the index in the image's full token grid each token stands at
        (families whose LLM positions follow the grid: Qwen2-VL); None elsewhere.
    last: the strategy's raw result of the last tower batch (overlays).
    base_rows: per image, the row of `last` holding its (base) view, when `last` covers the
        batch's views on a square grid (the kept-token overlays draw it); None otherwise."""

    tokens: list[Tensor]
    kept: list[list[int]] | None = None
    positions: list[Tensor] | None = None
    last: CompressionResult | None = field(default=None, repr=False)
    base_rows: list[int] | None = None

    @property
    def lengths(self) -> list[int]:
        return [t.shape[0] for t in self.tokens]


@dataclass(frozen=True)
class TowerShape:
    """A vision tower's shape as its config states it (no weights loaded).

    num_patches: patches per view, or None where the grid follows each image (Qwen2-VL).
    depth: the tower's layers.
    has_cls: whether the tower prepends a CLS token to the patches."""

    num_patches: int | None
    depth: int
    has_cls: bool


class Family:
    """The interface; see the module docstring. Subclasses set the class attributes."""

    name = "base"
    model_types: tuple[str, ...] = ()
    # generate() keyword arguments that describe the images (consumed by `encode`)
    image_inputs: tuple[str, ...] = ("pixel_values",)
    supports_llm_side = False  # FastV & co. hook LLaVA's LlavaModel + Llama decoder only
    processor_name = "AutoProcessor"  # the transformers processor class of the family

    def __init__(self, layout: str = "reference"):
        self.layout = layout  # multi-view families lay out kept tokens by it (llava_next)

    def model_class(self):
        raise NotImplementedError

    def processor_class(self):
        import transformers

        return getattr(transformers, self.processor_name)

    def vision_tower(self, model):
        return model.model.vision_tower

    def tower_has_cls(self, vision_config) -> bool:
        """Whether the family's tower of this config prepends a CLS token: CLIP's and DINOv2's
        do, SigLIP's has none."""
        model_type = vision_config.model_type
        return model_type.startswith("clip") or model_type == "dinov2"

    def tower_shape(self, vision_config, image_size: int | None = None) -> TowerShape:
        """The tower's shape from its config; `image_size` overrides the config's resolution."""
        grid = (image_size or vision_config.image_size) // vision_config.patch_size
        return TowerShape(
            grid * grid, vision_config.num_hidden_layers, self.tower_has_cls(vision_config)
        )

    def check(self, model, compressor: Compressor) -> int | None:
        """Validate the budget against the tower now (raises BudgetError); return the tokens
        per image when that number is fixed, else None."""
        raise NotImplementedError

    def full_tokens(self, model) -> int | None:
        """Tokens per image without compression, when fixed (LLaVA-1.5)."""
        return None

    def full_lengths(self, model, images: dict[str, Any]) -> list[int] | None:
        """Each image's placeholder count as the processor expanded it, when the family can tell
        (then adjacent images in a prompt need no separator); None: one run per image."""
        full = self.full_tokens(model)
        if full is None or images.get("pixel_values") is None:
            return None
        return [full] * images["pixel_values"].shape[0]

    def encode(self, model, compressor: Compressor, images: dict[str, Any], stats) -> Encoded:
        raise NotImplementedError

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
        """Extra generate() arguments for the cut sequence. `source` (B, T'): the position in
        the caller's row of each kept position (-1: padding)."""
        return {}

    def patch(self, model, compressor: Compressor, stats) -> dict[str, Any]:
        """Instance attributes to override beyond generate (name -> replacement); uninstall
        deletes them again."""
        return {}


def family_for_type(model_type: str, **options) -> Family:
    if model_type not in FAMILIES:
        raise ConfigError(
            "model", model_type, f"a model of a supported family ({', '.join(FAMILIES)})"
        )
    module, _, name = FAMILIES[model_type].partition(":")
    return getattr(importlib.import_module(module), name)(**options)


def family_of(model, **options) -> Family:
    return family_for_type(model.config.model_type, **options)


def resize_image_runs(
    input_ids: Tensor,
    attention_mask: Tensor | None,
    image_token_id: int,
    lengths: list[int],
    pad_id: int,
    full: list[int] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Give the k-th image's run of placeholders (counted over the batch, row by row) lengths[k]
    positions, and left-pad the rows again. The k-th image has full[k] placeholders when given
    (so adjacent images' runs can be told apart), else one run each. Returns (ids, mask,
    source): source is each new position's index in the caller's row (-1 for padding; a run that
    grows repeats its last placeholder)."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    rows, sources = [], []
    image = 0
    for ids, mask in zip(input_ids, attention_mask):
        where = mask.bool().nonzero().flatten()
        ids = ids[where]
        is_image = (ids == image_token_id).tolist()
        out, src = [], []
        k = 0
        while k < len(ids):
            if not is_image[k]:
                out.append(int(ids[k]))
                src.append(int(where[k]))
                k += 1
                continue
            end = k
            while end < len(ids) and is_image[end]:
                end += 1
            if full is not None and image < len(full):
                end = min(end, k + full[image])  # this image's own placeholders only
            if image >= len(lengths):
                raise ValueError(
                    f"the prompts hold more image placeholder runs than the {len(lengths)} images "
                    "given (separate images in a prompt by text, as chat templates do)"
                )
            run = [int(where[min(k + j, end - 1)]) for j in range(lengths[image])]
            out += [image_token_id] * len(run)
            src += run
            image += 1
            k = end
        rows.append(out)
        sources.append(src)
    if image != len(lengths):
        raise ValueError(f"{len(lengths)} images but {image} image placeholder runs in the prompts")
    width = max(len(r) for r in rows)
    out_ids = torch.full((len(rows), width), pad_id, dtype=input_ids.dtype)
    out_mask = torch.zeros((len(rows), width), dtype=attention_mask.dtype)
    out_src = torch.full((len(rows), width), -1, dtype=torch.long)
    for i, (r, s) in enumerate(zip(rows, sources)):
        out_ids[i, width - len(r) :] = torch.tensor(r, dtype=input_ids.dtype)
        out_mask[i, width - len(r) :] = 1
        out_src[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
    device = input_ids.device
    return out_ids.to(device), out_mask.to(device), out_src.to(device)


def gather_positions(tensor: Tensor, source: Tensor, fill: int = 0) -> Tensor:
    """A per-token tensor of the caller's rows (B, T, ...) at the cut sequence's positions
    (`source` from resize_image_runs); `fill` where source is padding."""
    index = source.clamp(min=0)
    out = tensor.gather(
        1,
        index.view(*index.shape, *([1] * (tensor.dim() - 2))).expand(
            *index.shape, *tensor.shape[2:]
        ),
    )
    pad = (source < 0).view(*source.shape, *([1] * (tensor.dim() - 2)))
    return out.masked_fill(pad, fill)
