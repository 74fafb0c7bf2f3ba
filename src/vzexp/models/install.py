"""Run a transformers vision-language model with a compressor: `install(model, compressor)`.

`install` patches one model instance in place (the reference's `visionzip(model, ...)`
one-liner), for every family of `vzexp.models.family`, and returns an `Installed` handle that
holds the run's statistics and undoes the patch (`handle.remove()` or `uninstall(handle)`):
  * `model.generate` encodes the images first (capture at the selection layer, compress, the
    model's projector), cuts each image's run of placeholders to the tokens it now has, hands the
    tokens to the model's own generate as precomputed encoder outputs, and returns the caller's
    prompt ids followed by the new tokens (so `out[:, inputs.input_ids.shape[1]:]` still slices
    the answer);
  * a family may patch more (LLaVA-1.5 patches `model.model.get_image_features`, so forward()
    calls with pixel_values get the compressed tokens too).
The patches are instance attributes that shadow the classes' methods; nothing else is stored on
the model. The patched `generate` is a bound method of the handle, which is how `installed(model)`
finds the handle of a patched model.
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


def count(stats: CompressionStats, encoded: Encoded) -> None:
    stats.images += len(encoded.tokens)
    stats.visual_tokens += sum(encoded.lengths)
    stats.lengths += encoded.lengths
    stats.last, stats.kept, stats.base_rows = encoded.last, encoded.kept, encoded.base_rows


def feature_layer(model) -> int:
    """The tower layer whose features a LLaVA-style model projects (config.vision_feature_layer)."""
    layer = model.config.vision_feature_layer
    if not isinstance(layer, int):
        raise ConfigError(
            "model.vision_feature_layer",
            layer,
            "a single layer index (multi-layer features are not supported yet)",
        )
    return layer


def tokens_per_image(model, compressor: Compressor) -> int:
    """Visual tokens one image gives the LLM under `compressor` on a fixed-grid tower."""
    info = tower_info(model.model.vision_tower)
    return compressor.output_tokens(info.num_patches, info.has_cls)


def full_tokens_per_image(model) -> int:
    """Visual tokens one image gives the LLM without compression on a fixed-grid tower."""
    info = tower_info(model.model.vision_tower)
    keep_cls = info.has_cls and model.config.vision_feature_select_strategy == "full"
    return info.num_patches + int(keep_cls)


@dataclass(eq=False)
class Installed:
    """One compressor installed on one model; see the module docstring.

    model: the patched model.
    compressor: the run's strategy (an LLM-side one for FastV & co.); its `sample_keys` seed the
        per-sample random choices.
    family: the model's family adapter.
    stats: the statistics of the calls since the engine's last `stats.reset()`.
    tokens_per_image: visual tokens per image when fixed by the tower, else None.
    last_sequences: the ids the LLM saw in the last generate (image runs cut to the kept tokens;
        a dialogue continues from them).
    encoder_compressor: what encodes the images (the strategy itself, or all tokens when the
        strategy prunes inside the LLM).
    patched: the owner of every patched attribute, by name (removed again by `remove`)."""

    model: Any
    compressor: Compressor
    family: Family
    stats: CompressionStats
    tokens_per_image: int | None
    encoder_compressor: Compressor
    original_generate: Any = field(repr=False)
    patched: dict[str, Any] = field(default_factory=dict, repr=False)
    last_sequences: Tensor | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        return bool(self.patched)

    def generate(self, input_ids=None, attention_mask=None, **kwargs):
        """The model's generate on the compressed visual tokens (installed as `model.generate`)."""
        model, family, stats = self.model, self.family, self.stats
        images = {k: kwargs.pop(k) for k in family.image_inputs if k in kwargs}
        if input_ids is None or images.get("pixel_values") is None:
            return self.original_generate(
                input_ids=input_ids, attention_mask=attention_mask, **images, **kwargs
            )
        start = time.perf_counter()
        encoded = family.encode(model, self.encoder_compressor, images, stats)
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
        out = self.original_generate(
            input_ids=ids,
            attention_mask=mask,
            mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=encoded.tokens)},
            **kwargs,
            **extra,
        )
        sequences = out if isinstance(out, Tensor) else out.sequences
        self.last_sequences = sequences
        # Give back the caller's prompt followed by the new tokens.
        restored = torch.cat([input_ids, sequences[:, ids.shape[1] :]], dim=1)
        if isinstance(out, Tensor):
            return restored
        out.sequences = restored
        return out

    def remove(self) -> Any:
        """Undo the patch: the model runs its own methods again. Returns the model."""
        if not self.patched:
            return self.model
        if self.compressor.kind == "llm":
            self.compressor.detach()
        for name, owner in self.patched.items():
            owner.__dict__.pop(name, None)  # the instance attribute; the class's method shows again
        self.patched = {}
        self.last_sequences = None
        return self.model


def installed(model) -> Installed | None:
    """The active handle of a patched model, or None when nothing is installed on it."""
    generate = model.__dict__.get("generate")
    handle = getattr(generate, "__self__", None)
    return handle if isinstance(handle, Installed) and handle.active else None


def install(model, compressor: Compressor, layout: str = "reference") -> Installed:
    """Patch `model` (a transformers model of a supported family) in place to run with
    `compressor`, replacing an earlier install; `uninstall` or the handle's `remove` undoes it.
    `layout`: how multi-view families (LLaVA-NeXT) lay out the kept tokens
    (vzexp.models.llava_next)."""
    uninstall(model)
    family = family_of(model, layout=layout)
    stats = CompressionStats()
    encoder_compressor = compressor
    if compressor.kind == "llm":
        if not family.supports_llm_side:
            raise ConfigError(
                "compressor",
                compressor.name,
                f"an encoder-side strategy for a {family.name} model (LLM-side strategies hook "
                "LLaVA-1.5's Llama decoder only)",
            )
        # every visual token enters the LLM, as the model selects them; pruning happens inside
        encoder_compressor = NoCompression(
            select=model.config.vision_feature_select_strategy, layer=feature_layer(model)
        )
        compressor.attach(model, family.full_tokens(model), stats)
    kept = family.check(model, encoder_compressor)  # validates the budget against the grid now
    handle = Installed(
        model=model,
        compressor=compressor,
        family=family,
        stats=stats,
        tokens_per_image=kept,
        encoder_compressor=encoder_compressor,
        original_generate=model.generate,
    )
    patched = {
        **family.patch(model, encoder_compressor, stats),
        "generate": (model, handle.generate),
    }
    for name, (owner, replacement) in patched.items():
        setattr(owner, name, replacement)
    handle.patched = {name: owner for name, (owner, _) in patched.items()}
    return handle


def uninstall(target) -> Any:
    """Undo `install`: `target` is its handle or the patched model (a model with nothing
    installed is left as it is). Returns the model."""
    if isinstance(target, Installed):
        return target.remove()
    handle = installed(target)
    return target if handle is None else handle.remove()
