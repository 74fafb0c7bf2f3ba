"""What every task has: a schema (a dataclass with the task's keys) that checks what it can
before anything loads, names its MLflow run, and runs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Context:
    """What the dispatcher gives a task: the job's output directory and its tracked run
    (`vzexp.tracking`: log_metrics, log_artifact, set_tags; no effect with logger=none)."""

    out: Path
    tracker: Any


@dataclass
class Task(ABC):
    name: str = ""

    def check(self, settings) -> None:
        """Checks across config groups, made at validation (no model, no file read); none by
        default."""
        return None

    def prepare(self, settings) -> None:
        """Checks that read model configs or compose further configs, made before the run
        opens (a wrong budget costs seconds, not a model load); none by default."""
        return None

    def run_name(self, settings) -> str:
        """The task's name, then in a sweep this job's values of what the sweep varies."""
        return "-".join([self.name, *varying_overrides()])

    def logged_params(self, settings, params: dict[str, Any]) -> dict[str, Any]:
        """The params the run logs, from the resolved config `params`: a task replaces the
        values it resolves itself (e.g. a strategy's split of the budget); as given by
        default."""
        return params

    @abstractmethod
    def run(self, settings, context: Context) -> dict[str, float]:
        """Do the task; returns its metrics (a sweeper reads its objectives from them)."""


# Hydra's own sweeper: every job a distinct point of the grid
GRID_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def short_keys(keys: list[str]) -> dict[str, str]:
    """Each key by its last dotted part (`compressor.merge_space` -> `merge_space`), or whole
    when two keys share that part."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (short if last.count(short) == 1 else k) for k, short in zip(keys, last)}


def varying_overrides(skip: tuple[str, ...] = ()) -> list[str]:
    """In a sweep, this job's `key=value` for each key the sweep varies (vzexp.sweep lists them
    in the sweep directory), in the order of the job's overrides, keys shortened by
    `short_keys`; `skip`: keys the run's name states already. A search sweeper (Optuna) may
    try one point twice, so its trials also carry their number (`trial=3`). Empty outside a
    sweep."""
    from hydra.core.hydra_config import HydraConfig

    from vzexp.tracking import sweep_keys

    if not HydraConfig.initialized() or HydraConfig.get().mode.name != "MULTIRUN":
        return []
    hc = HydraConfig.get()
    keys = [k for k in sweep_keys(hc.sweep.dir) if k not in skip]
    names = short_keys(keys)
    out = []
    for override in hc.overrides.task:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if key in names:
            out.append(f"{names[key]}={value}")
    if hc.sweeper.get("_target_") != GRID_SWEEPER:
        out.append(f"trial={hc.job.num}")
    return out
