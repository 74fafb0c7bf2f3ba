"""Facts about the running job that several layers need: its rank in a multi-process run, its
output directory and the Hydra choices it was composed with."""

from __future__ import annotations

import os
from pathlib import Path


def rank() -> int:
    """This process's rank in a multi-process (DDP) run: Lightning starts the other ranks with
    LOCAL_RANK/RANK set; only rank 0 tracks, prints and scores."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def output_dir() -> Path:
    """The job's Hydra output directory (the working directory outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


def hydra_choices() -> dict[str, str]:
    """The option chosen in each config group (`model: tiny_shapes`, `experiment: ...`)."""
    from hydra.core.hydra_config import HydraConfig

    return dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}


def hydra_tags(parent_run_id) -> dict[str, str]:
    """Run tags from Hydra: each group's choice, the command line's overrides and, in a sweep,
    the parent run (`parent_run_id(sweep_dir)` finds it) that the MLflow UI nests jobs under."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    tags = {
        f"choice.{k}": str(v) for k, v in hc.runtime.choices.items() if not k.startswith("hydra")
    }
    tags["vzexp.overrides"] = " ".join(hc.overrides.task)[:5000]
    if hc.mode.name == "MULTIRUN" and (parent := parent_run_id(hc.sweep.dir)):
        tags["mlflow.parentRunId"] = parent
    return tags
