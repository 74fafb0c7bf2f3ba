"""task=build_tiny: the recipe that trains the shipped tiny_shapes model
(`python -m vzexp +experiment=build_tiny`), run as a task: its MLflow run, then the recipe
(vzexp.recipes.tiny_shapes), which evaluates the model it built with this run's evaluation loop."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from vzexp.recipes.tiny_shapes.config import BuildTinyTaskConfig
from vzexp.recipes.tiny_shapes.recipe import build_tiny
from vzexp.tasks.base import Context, Task
from vzexp.tasks.common import evaluate_and_log


@dataclass
class BuildTinyTask(BuildTinyTaskConfig, Task):
    """The recipe's own schema (its stages, scenes, budget batches) as a task."""

    def run(self, settings, context: Context) -> dict[str, float]:
        predict = partial(evaluate_and_log, settings, tracker=context.tracker)
        return build_tiny(settings, context.tracker, context.out, predict)
