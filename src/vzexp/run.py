"""`run(cfg)`: validate -> checks -> MLflow run -> the task. The task is the class that
`conf/task/<name>.yaml` names with `_target_` (vzexp.tasks); nothing here knows which it is."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vzexp.config import ModelKind, VzexpConfig, validate
from vzexp.hardware import announce
from vzexp.models.projector import RUN_ID, resolve
from vzexp.preflight import (
    check_devices,
    check_tracking_server,
    check_tracking_uri,
    check_values,
)
from vzexp.runtime import hydra_choices, hydra_tags, output_dir, rank
from vzexp.tasks.base import Context
from vzexp.tracking import experiment_name, parent_run_id, tracked_run, tracking_uri

log = logging.getLogger("vzexp")


def logged_params(cfg: DictConfig, settings: VzexpConfig) -> dict[str, Any]:
    params = OmegaConf.to_container(cfg, resolve=True)
    params.pop("hydra", None)
    if settings.model.kind == ModelKind.checkpoint:  # encoder and LLM come from the checkpoint
        params.pop("encoder", None)
        params.pop("llm", None)
    return params


def preflight(settings: VzexpConfig, out: Path) -> None:
    """What the environment must offer, checked before the run opens or a model loads."""
    check_devices(settings.model.device, settings.trainer.accelerator)
    check_values(settings)
    if settings.model.projector and not RUN_ID.match(settings.model.projector):
        resolve(settings.model.projector)  # a path: checked before any model loads
    out.mkdir(parents=True, exist_ok=True)
    if settings.logger.name == "mlflow" and rank() == 0:
        check_tracking_uri(tracking_uri(settings.logger.tracking_uri))
        check_tracking_server(tracking_uri(settings.logger.tracking_uri))


def run(cfg: DictConfig) -> dict[str, float]:
    settings = validate(cfg)
    task = settings.task
    task.prepare(settings)
    out = output_dir()
    preflight(settings, out)
    params = task.logged_params(settings, logged_params(cfg, settings))
    if rank() == 0:  # `auto` as resolved for this machine, and what it reported (vzexp.hardware)
        m, t = settings.model, settings.trainer
        for key, value in announce(m.dtype.value, m.device, t.accelerator, t.precision).items():
            section, name = key.split(".", 1)
            params.setdefault(section, {})[name] = value
    with tracked_run(
        enabled=settings.logger.name == "mlflow" and rank() == 0,
        params=params,
        experiment_name=experiment_name(settings.logger.experiment_name, hydra_choices()),
        run_name=settings.logger.run_name or task.run_name(settings),
        uri=settings.logger.tracking_uri,
        tags=hydra_tags(parent_run_id),
        system_metrics=settings.logger.system_metrics,
    ) as tracker:
        if rank() == 0:
            config_file = out / "resolved_config.yaml"
            config_file.write_text(OmegaConf.to_yaml(OmegaConf.create(params)))
            tracker.log_artifact(config_file)
        return task.run(settings, Context(out=out, tracker=tracker))
