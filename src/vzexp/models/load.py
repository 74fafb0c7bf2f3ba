"""A run's model and compressor from its validated settings (vzexp.config.VzexpConfig): the
tower's shape read from configs alone (so impossible budgets fail before any weights load), the
compressor checked against it, and the model loaded from a checkpoint or assembled, with a tuned
projector over its own when `model.projector` names one."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

if TYPE_CHECKING:  # the heavy modules load on first use: validation runs before any of them
    from vzexp.compress.base import Compressor
    from vzexp.config import VzexpConfig
    from vzexp.models.family import TowerShape
    from vzexp.models.projector import Download

log = logging.getLogger("vzexp")


def _plain(node: Any) -> dict[str, Any]:
    """A typed settings node -> a plain dict with enums as strings, as the builders take it."""
    return OmegaConf.to_container(OmegaConf.structured(node), resolve=True, enum_to_str=True)


def tower_shape(settings: VzexpConfig) -> TowerShape:
    """The vision tower's shape, read from configs without loading weights: the checkpoint's
    family reads its own tower; an assembled model is a LLaVA-1.5 over the encoder's config."""
    from transformers import AutoConfig

    from vzexp.models.build import ENCODER_KINDS, check_checkpoint_dir, checkpoint_type
    from vzexp.models.family import family_for_type

    if settings.model.kind == "checkpoint":
        model_type = checkpoint_type(settings.model.path, settings.model.family)
        config = AutoConfig.from_pretrained(Path(settings.model.path).expanduser())
        return family_for_type(model_type).tower_shape(config.vision_config)
    if settings.encoder.path:
        vision = AutoConfig.from_pretrained(
            check_checkpoint_dir(settings.encoder.path, "encoder.path", ())
        )
        vision = getattr(vision, "vision_config", vision)
    else:
        vision = AutoConfig.for_model(
            ENCODER_KINDS[settings.encoder.kind.value], **settings.encoder.config
        )
    return family_for_type("llava").tower_shape(vision, settings.encoder.image_size)


def build_compressor(settings: VzexpConfig) -> Compressor:
    """The `compressor` node instantiated, its layer, the model's feature layer and its budget
    checked against the tower (ConfigError / BudgetError naming the key)."""
    from hydra.utils import instantiate

    from vzexp.encoders.capture import resolve_layer
    from vzexp.models.qwen2_vl import refuse_grid_strategies

    node = {k: v for k, v in settings.compressor.items() if k != "name"}
    compressor = instantiate(node)
    shape = tower_shape(settings)
    resolve_layer(compressor.layer, shape.depth)
    resolve_layer(settings.model.feature_layer, shape.depth, "model.feature_layer")
    if shape.num_patches is None:  # the grid follows each image: the budget's own consistency
        refuse_grid_strategies(compressor, "a model whose grid follows each image")
        compressor.output_tokens(1 << 16, shape.has_cls)
    else:
        compressor.output_tokens(shape.num_patches, shape.has_cls)
    return compressor


def load_model(settings: VzexpConfig, words: list[str], download: Download | None = None):
    """(model, processor) of the settings' `model`; `words`: the vocabulary of an assembled
    model's word-level tokenizer. `download(run_id, artifact_path) -> local directory` resolves
    a `model.projector` given as an MLflow run id (vzexp.tracking.download_artifacts)."""
    from vzexp.models.build import assemble, load_checkpoint, set_image_pad

    m = settings.model
    if m.kind == "checkpoint":
        model, processor = load_checkpoint(
            m.path, m.dtype.value, m.device, m.attn_implementation.value, m.family
        )
    else:
        model, processor = assemble(
            _plain(settings.encoder),
            _plain(settings.llm),
            words,
            feature_layer=m.feature_layer,
            select=m.select.value,
            projector_act=m.projector_act,
            dtype=m.dtype.value,
            device=m.device,
            attn_implementation=m.attn_implementation.value,
            seed=settings.seed,
        )
    set_image_pad(processor, m.image_pad)
    if m.projector:
        from vzexp.models.projector import load_projector

        loaded = load_projector(model, m.projector, download)
        log.info("projector loaded from %s", loaded)
    return model, processor
