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
        return self.name

    @abstractmethod
    def run(self, settings, context: Context) -> dict[str, float]:
        """Do the task; returns its metrics (a sweeper reads its objectives from them)."""
