"""`run(cfg)`: validate -> MLflow run -> load model -> install compressor -> evaluate -> log."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vzexp.config import ModelKind, VzexpConfig, as_plain, validate
from vzexp.tracking import tracked_run

log = logging.getLogger("vzexp")


def output_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


def tower_shape(settings: VzexpConfig) -> tuple[int, int, bool]:
    """(num_patches, depth, has_cls) of the vision tower, read from configs without loading weights."""
    from transformers import AutoConfig

    from vzexp.models.build import ENCODER_KINDS, _check_checkpoint_dir

    if settings.model.kind == ModelKind.checkpoint:
        root = _check_checkpoint_dir(settings.model.path, "model.path", ("llava",))
        vision = AutoConfig.from_pretrained(root).vision_config
    elif settings.encoder.path:
        vision = AutoConfig.from_pretrained(
            _check_checkpoint_dir(settings.encoder.path, "encoder.path", ())
        )
        vision = getattr(vision, "vision_config", vision)
    else:
        vision = AutoConfig.for_model(
            ENCODER_KINDS[settings.encoder.kind.value], **settings.encoder.config
        )
    grid = vision.image_size // vision.patch_size
    return grid * grid, vision.num_hidden_layers, vision.model_type.startswith("clip")


def build_compressor(settings: VzexpConfig):
    from hydra.utils import instantiate

    from vzexp.encoders.capture import resolve_layer

    node = {k: v for k, v in settings.compressor.items() if k != "name"}
    compressor = instantiate(node)
    num_patches, depth, has_cls = tower_shape(settings)
    resolve_layer(compressor.layer, depth)  # ConfigError naming compressor.layer if out of range
    resolve_layer(settings.model.feature_layer, depth, "model.feature_layer")
    compressor.output_tokens(num_patches, has_cls)  # BudgetError naming the key if impossible
    return compressor


def load_model(settings: VzexpConfig, words: list[str]):
    from vzexp.models.build import assemble, load_checkpoint

    m = settings.model
    if m.kind == ModelKind.checkpoint:
        model, processor = load_checkpoint(
            m.path, m.dtype.value, m.device, m.attn_implementation.value
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
    return model, processor


def logged_params(cfg: DictConfig, settings: VzexpConfig) -> dict[str, Any]:
    params = OmegaConf.to_container(cfg, resolve=True)
    params.pop("hydra", None)
    if settings.model.kind == ModelKind.checkpoint:  # encoder and LLM come from the checkpoint
        params.pop("encoder", None)
        params.pop("llm", None)
    return params


def hydra_tags() -> dict[str, str]:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    tags = {
        f"choice.{k}": str(v) for k, v in hc.runtime.choices.items() if not k.startswith("hydra")
    }
    tags["vzexp.overrides"] = " ".join(hc.overrides.task)[:5000]
    return tags


def results_table(metrics: dict[str, float], settings: VzexpConfig) -> str:
    rows = [
        ("model", settings.model.name),
        ("compressor", settings.compressor.get("name", "?")),
        ("data", settings.data.name),
    ]
    rows += [(k, f"{v:.4g}") for k, v in metrics.items()]
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'':{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k:{width}} | {v} |" for k, v in rows]
    return "\n".join(lines)


def run(cfg: DictConfig) -> dict[str, float]:
    settings = validate(cfg)
    building = settings.task.name == "build_tiny"
    compressor = None if building else build_compressor(settings)
    out = output_dir()
    out.mkdir(parents=True, exist_ok=True)
    params = logged_params(cfg, settings)
    default_name = (
        "build_tiny" if building else f"{settings.compressor.get('name')}-t{settings.tokens}"
    )
    with tracked_run(
        enabled=settings.logger.name == "mlflow",
        params=params,
        experiment_name=settings.logger.experiment_name,
        run_name=settings.logger.run_name or default_name,
        uri=settings.logger.tracking_uri,
        tags=hydra_tags(),
    ) as tracker:
        config_file = out / "resolved_config.yaml"
        config_file.write_text(OmegaConf.to_yaml(OmegaConf.create(params)))
        tracker.log_artifact(config_file)
        if building:
            from vzexp.models.tiny_recipe import build_tiny

            return build_tiny(settings, tracker, out, predictor(settings, tracker))
        return evaluate(settings, compressor, out, tracker)


def predictor(settings: VzexpConfig, tracker):
    """predict(model, processor, dataset, predictions_path) -> metrics, with this run's trainer
    settings; writes the predictions file, logs it and prints the results table."""

    def predict(model, processor, dataset, predictions: Path) -> dict[str, float]:
        import lightning as L

        from vzexp.engine.evaluate import EvalDataModule, Evaluator, summarize

        trainer = L.Trainer(
            accelerator=settings.trainer.accelerator,
            devices=settings.trainer.devices,
            strategy=settings.trainer.strategy,
            precision=settings.trainer.precision,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            default_root_dir=str(predictions.parent),
        )
        datamodule = EvalDataModule(
            dataset,
            processor,
            settings.data.batch_size,
            settings.data.limit,
            settings.data.num_workers,
        )
        batches = trainer.predict(
            Evaluator(model, processor, settings.task.max_new_tokens), datamodule=datamodule
        )
        records = [r for batch in batches for r in batch]
        with predictions.open("w") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        metrics = summarize(records, settings.model.device)
        tracker.log_artifact(predictions)
        print(results_table(metrics, settings), flush=True)
        return metrics

    return predict


def evaluate(settings: VzexpConfig, compressor, out: Path, tracker) -> dict[str, float]:
    import lightning as L
    from hydra.utils import instantiate

    from vzexp.models.llava import install

    L.seed_everything(settings.seed, verbose=False)
    dataset = instantiate(settings.data.dataset)
    words = dataset.vocabulary() if hasattr(dataset, "vocabulary") else []
    model, processor = load_model(settings, words)
    install(model, compressor)
    log.info("visual tokens per image: %d", model.vzexp_tokens_per_image)
    metrics = predictor(settings, tracker)(
        model, processor, dataset, out / settings.task.predictions_file
    )
    tracker.log_metrics(metrics)
    return metrics
