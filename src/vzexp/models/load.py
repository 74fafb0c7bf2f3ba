"""Loading a model from the config: a local checkpoint or an assembly of parts, and the
compressor the config names, checked against the model's vision tower before anything loads."""

from __future__ import annotations

import logging
from pathlib import Path

from vzexp.config import ModelKind, VzexpConfig, as_plain

log = logging.getLogger("vzexp")


def tower_shape(settings: VzexpConfig) -> tuple[int | None, int, bool]:
    """(patches per view, depth, has_cls) of the vision tower, read from configs without
    loading weights; patches is None for towers whose grid follows each image (Qwen2-VL)."""
    from transformers import AutoConfig

    from vzexp.models.build import ENCODER_KINDS, _check_checkpoint_dir, checkpoint_type

    if settings.model.kind == ModelKind.checkpoint:
        model_type = checkpoint_type(settings.model.path, settings.model.family)
        vision = AutoConfig.from_pretrained(Path(settings.model.path).expanduser()).vision_config
        if model_type.startswith("qwen2"):
            return None, vision.depth, False
    elif settings.encoder.path:
        vision = AutoConfig.from_pretrained(
            _check_checkpoint_dir(settings.encoder.path, "encoder.path", ())
        )
        vision = getattr(vision, "vision_config", vision)
    else:
        vision = AutoConfig.for_model(
            ENCODER_KINDS[settings.encoder.kind.value], **settings.encoder.config
        )
    size = settings.encoder.image_size if settings.model.kind != ModelKind.checkpoint else None
    grid = (size or vision.image_size) // vision.patch_size
    has_cls = vision.model_type.startswith("clip") or vision.model_type == "dinov2"
    return grid * grid, vision.num_hidden_layers, has_cls


def build_compressor(settings: VzexpConfig):
    from hydra.utils import instantiate

    from vzexp.encoders.capture import resolve_layer
    from vzexp.models.qwen2_vl import refuse_grid_strategies

    node = {k: v for k, v in settings.compressor.items() if k != "name"}
    compressor = instantiate(node)
    num_patches, depth, has_cls = tower_shape(settings)
    resolve_layer(compressor.layer, depth)  # ConfigError naming compressor.layer if out of range
    resolve_layer(settings.model.feature_layer, depth, "model.feature_layer")
    if num_patches is None:  # the grid follows each image: check the budget's own consistency
        refuse_grid_strategies(compressor, "a model whose grid follows each image")
        compressor.output_tokens(1 << 16, has_cls)
    else:
        compressor.output_tokens(num_patches, has_cls)  # BudgetError naming the key if impossible
    return compressor


def load_model(settings: VzexpConfig, words: list[str]):
    from vzexp.models.build import assemble, load_checkpoint

    m = settings.model
    if m.kind == ModelKind.checkpoint:
        model, processor = load_checkpoint(
            m.path, m.dtype.value, m.device, m.attn_implementation.value, m.family
        )
    else:
        model, processor = assemble(
            as_plain(settings.encoder),
            as_plain(settings.llm),
            words,
            feature_layer=m.feature_layer,
            select=m.select.value,
            projector_act=m.projector_act,
            dtype=m.dtype.value,
            device=m.device,
            attn_implementation=m.attn_implementation.value,
            seed=settings.seed,
        )
    if m.projector:
        from vzexp.models.projector import load_projector
        from vzexp.tracking import tracking_uri

        loaded = load_projector(model, m.projector, tracking_uri(settings.logger.tracking_uri))
        log.info("projector loaded from %s", loaded)
    return model, processor
