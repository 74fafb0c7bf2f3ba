"""The schema of `task=build_tiny` (conf/task/build_tiny.yaml): the tiny_shapes recipe's settings
and their ranges. Out-of-range values end as one `ConfigError` line naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field

from vzexp.errors import ConfigError


@dataclass
class StageConfig:
    """One training stage of the tiny model recipe."""

    steps: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 10
    turns: int = 6  # questions per training conversation (QA stages)
    grad_clip: float = 1.0  # max gradient norm (HF Trainer's default, as LLaVA trains)


@dataclass
class Stages:
    tower: StageConfig = field(default_factory=StageConfig)
    language: StageConfig = field(default_factory=StageConfig)
    align: StageConfig = field(default_factory=StageConfig)
    instruct: StageConfig = field(default_factory=StageConfig)

    def __post_init__(self):
        for name in ("tower", "language", "align", "instruct"):
            stage = getattr(self, name)
            for key, low in (("steps", 0), ("batch_size", 1), ("warmup_steps", 0), ("turns", 1)):
                if getattr(stage, key) < low:
                    raise ConfigError(
                        f"task.stages.{name}.{key}", getattr(stage, key), f"an integer >= {low}"
                    )
            if stage.lr <= 0:
                raise ConfigError(f"task.stages.{name}.lr", stage.lr, "a learning rate > 0")


@dataclass
class BuildTinyTaskConfig:
    """task=build_tiny: the recipe that trains the shipped tiny_shapes model."""

    name: str = "build_tiny"
    train_scenes: int = 12000
    max_objects: int = 4
    eval_size: int = 800
    output: str = "tiny_shapes"
    install: bool = False
    max_new_tokens: int = 4
    mimetic_init: bool = True  # tower attention init (vzexp.recipes.tiny_shapes.mimetic_init)
    patch_weight: float = 20.0  # weight of the tower's per-patch colour/shape losses
    # how the language stage puts the scene in the image slot: its caption's words, or one token
    # per object (its words' embeddings summed) at its centre patch's position
    scene_as: str = "objects"
    # each training turn sees the image and itself only, at the positions it has when asked alone
    isolate_turns: bool = True
    # the share of instruct batches whose image is compressed by VisionZip to one of
    # budget_tokens (VisionZip's fine-tuning step, folded into the recipe); 0: all tokens only
    budget_fraction: float = 0.0
    budget_tokens: list[int] = field(default_factory=lambda: [24])
    stages: Stages = field(default_factory=Stages)

    def __post_init__(self):
        if self.scene_as not in ("caption", "objects"):
            raise ConfigError("task.scene_as", self.scene_as, "caption or objects")
        for key in ("train_scenes", "max_objects", "eval_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"task.{key}", getattr(self, key), "an integer >= 1")
        if self.patch_weight < 0:
            raise ConfigError("task.patch_weight", self.patch_weight, "a number >= 0")
        if not 0.0 <= self.budget_fraction < 1.0:
            raise ConfigError("task.budget_fraction", self.budget_fraction, "a fraction in [0, 1)")
        if self.budget_fraction and not self.budget_tokens:
            raise ConfigError(
                "task.budget_tokens", self.budget_tokens, "a non-empty list of budgets"
            )
        for budget in self.budget_tokens:
            if budget < 1:
                raise ConfigError("task.budget_tokens", budget, "visual tokens >= 1 per budget")
