"""task.stages: a tuning recipe in several stages, each run as if its overrides were added to the
command line, each starting from the weights the stage before it left.

    task:
      stages:
        - [compressor=visionzip, tokens=16, task.tune_projector=true]   # stage 1: alignment
        - []                                                           # stage 2: this config

Every stage is composed by Hydra and checked against the typed schema before any model loads, so
a bad override in the last stage fails at once, not after the first stage's hour. The model is
loaded once: a stage may change what is trained and on what, not which model (its `model`,
`encoder` and `llm` must be the run's own). The run's own config decides what comes after the
stages: the evaluation (its compressor and data) and where the weights are published."""

from __future__ import annotations

from vzexp.config import VzexpConfig, as_plain, validate
from vzexp.errors import ConfigError, first_line

# what a stage may not change: the model is loaded once, before the first stage
FIXED = ("model", "encoder", "llm")


def compose_stages(settings: VzexpConfig) -> list[VzexpConfig]:
    """The settings of each stage of task.stages (the run's own settings when it has none)."""
    stages = getattr(settings.task, "stages", None)
    if not stages:
        return [settings]
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    command_line = list(hydra.overrides.task)
    composed = []
    for k, overrides in enumerate(stages, 1):
        key = f"task.stages[{k - 1}]"
        try:
            cfg = compose(
                hydra.job.config_name, overrides=[*command_line, *overrides, "task.stages=[]"]
            )
        except Exception as exc:  # Hydra's own errors: an unknown key, group or option
            allowed = f"Hydra overrides that compose ({first_line(exc)})"
            raise ConfigError(key, list(overrides), allowed) from None
        try:
            stage = validate(cfg)
        except ConfigError as exc:
            raise ConfigError(f"{key}: {exc.key}", exc.value, exc.allowed) from None
        check_stage(stage, settings, key, list(overrides))
        composed.append(stage)
    return composed


def check_stage(stage: VzexpConfig, run: VzexpConfig, key: str, overrides: list[str]) -> None:
    if stage.task.name != "tune":
        raise ConfigError(key, overrides, "overrides that keep task=tune (every stage trains)")
    for part in FIXED:
        mine, theirs = as_plain(getattr(stage, part)), as_plain(getattr(run, part))
        for name in sorted(set(mine) | set(theirs)):
            if mine.get(name) != theirs.get(name):
                raise ConfigError(
                    key,
                    overrides,
                    f"overrides that leave {part}.{name} as the run has it "
                    f"({theirs.get(name)!r}): the model is loaded once for every stage",
                )
