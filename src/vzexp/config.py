"""Typed schemas for the composed config, registered in Hydra's ConfigStore, and validation.

`validate(cfg)` merges the composed config into these dataclasses (type errors), then
`__post_init__` range-checks; both end as one `ConfigError` line naming key, value and what is
allowed, before any model is loaded.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vzexp.errors import ConfigError


class EncoderKind(StrEnum):
    clip = "clip"
    siglip = "siglip"
    dinov2 = "dinov2"


class ModelKind(StrEnum):
    assembly = "assembly"
    checkpoint = "checkpoint"


class DType(StrEnum):
    auto = "auto"  # the machine's (vzexp.hardware), resolved in validation
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"


class Attention(StrEnum):
    sdpa = "sdpa"
    eager = "eager"
    flash_attention_2 = "flash_attention_2"


class FeatureSelect(StrEnum):
    default = "default"
    full = "full"


@dataclass
class EncoderConfig:
    name: str
    kind: EncoderKind = EncoderKind.clip
    path: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    # The resolution the tower runs at, when not its checkpoint's (DINOv2: the position table is
    # interpolated once to it); null: the checkpoint's own.
    image_size: int | None = None
    # ImageNet normalisation (DINOv2) instead of CLIP's
    image_mean: list[float] | None = None
    image_std: list[float] | None = None


@dataclass
class LLMConfig:
    name: str
    kind: str = "llama"
    path: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    # the chat template: null for the tokenizer's own; chatml for a ChatML LLM (SmolLM2, Qwen),
    # with an <image> slot in user turns
    chat_template: str | None = None


@dataclass
class ModelConfig:
    name: str
    kind: ModelKind = ModelKind.assembly
    path: str | None = None
    # auto: resolved for the machine in validation (vzexp.hardware); device spread: accelerate
    # places a checkpoint's layers over the visible GPUs
    dtype: DType = DType.auto
    device: str = "auto"
    attn_implementation: Attention = Attention.sdpa
    feature_layer: int = -2
    select: FeatureSelect = FeatureSelect.default
    projector_act: str = "gelu"
    # This model's usual visual-token budget; the top-level `tokens` follows it unless set.
    tokens: int = 64
    # a tuned projector to load over the model's own: task=tune's projector/ directory, its
    # projector.safetensors, or the MLflow run id of that task=tune run
    projector: str | None = None
    # the checkpoint's family (its config.json model_type: llava, llava_next, llava_onevision,
    # qwen2_vl, qwen2_5_vl); a checkpoint of another family is refused. null: any of them
    family: str | None = None
    # multi-view families (LLaVA-NeXT/OneVision): how kept tokens are laid out, reference (as
    # VisionZip does) or newline (the model's unpadded rows with image-newline tokens)
    layout: str = "reference"

    def __post_init__(self):
        from vzexp.models.registry import FAMILIES

        if self.kind == ModelKind.checkpoint and not self.path:
            raise ConfigError(
                "model.path",
                self.path,
                "a local checkpoint directory (e.g. model.path=/models/llava-1.5-7b-hf)",
            )
        if self.family is not None and self.family not in FAMILIES:
            raise ConfigError("model.family", self.family, f"null or one of {', '.join(FAMILIES)}")
        if self.layout not in ("reference", "newline"):
            raise ConfigError("model.layout", self.layout, "reference or newline")
        if self.attn_implementation == Attention.flash_attention_2:
            import importlib.util

            if importlib.util.find_spec("flash_attn") is None:
                raise ConfigError(
                    "model.attn_implementation",
                    "flash_attention_2",
                    "sdpa or eager here: flash-attn is not installed (pip install flash-attn "
                    "on a CUDA machine for flash_attention_2)",
                )


@dataclass
class DataConfig:
    name: str
    dataset: dict[str, Any] = field(default_factory=dict)
    root: str | None = None  # local directory of a real benchmark's files
    limit: int | None = None
    batch_size: int = 8
    num_workers: int = 0
    # the benchmark's official rule (vzexp.data.scorers); per type breakdowns come from meta
    scorer: str = "exact_match"
    # an unreadable or truncated image: fail (stop, one line) or skip (record it as skipped,
    # score the rest, report the count as skipped_samples)
    on_bad_image: str = "fail"

    def __post_init__(self):
        if self.limit is not None and self.limit < 1:
            raise ConfigError(
                "data.limit", self.limit, "a positive number of samples, or null for all"
            )
        if self.batch_size < 1:
            raise ConfigError("data.batch_size", self.batch_size, "an integer >= 1")
        if self.num_workers < 0:
            raise ConfigError("data.num_workers", self.num_workers, "an integer >= 0")
        if self.on_bad_image not in ("fail", "skip"):
            raise ConfigError("data.on_bad_image", self.on_bad_image, "fail or skip")


@dataclass
class TaskConfig:
    """task=eval: prefill + greedy generation, scored and timed."""

    name: str = "eval"
    max_new_tokens: int = 4
    predictions_file: str = "predictions.jsonl"  # the merged copy in the run's output dir
    # Predictions are written per batch under predictions_dir, in a file named after the config
    # (model, compressor, data, tokens, seed): a killed run restarted with the same config
    # resumes there. resume=false starts that file again.
    predictions_dir: str = "predictions"
    resume: bool = True
    overlays: int = 4  # kept-token overlays of the first samples, logged under overlays/
    # dialogues (data=shapes_dialogue): also ask every turn by re-sending the image and the
    # whole conversation, timed beside the cached turns (dialogue_time_saved)
    dialogue_baseline: bool = False

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ConfigError("task.max_new_tokens", self.max_new_tokens, "an integer >= 1")
        if self.overlays < 0:
            raise ConfigError("task.overlays", self.overlays, "an integer >= 0 (0: none)")


@dataclass
class ScoreTaskConfig:
    """task=score: re-score an existing predictions file with the data config's scorer."""

    name: str = "score"
    predictions: str | None = None

    def __post_init__(self):
        if not self.predictions:
            raise ConfigError(
                "task.predictions",
                self.predictions,
                "the path of a predictions .jsonl file to score (task.predictions=...)",
            )


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
    mimetic_init: bool = True  # tower attention init (vzexp.models.mimetic_init)
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


PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")


@dataclass
class TuneTaskConfig(TaskConfig):
    """task=tune: projector-only tuning with the compressor in the loop, then evaluation."""

    name: str = "tune"
    epochs: int = 1
    batch_size: int = 16
    accumulate: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    grad_clip: float = 1.0
    cache: bool = True
    cache_dir: str | None = None
    checkpoint_dir: str = "checkpoints"
    baseline: bool = True
    overlays: int = 0
    # also train the LLM's last N decoder layers (0: the projector alone, VisionZip's recipe);
    # they are saved beside the projector and loaded with it
    llm_layers: int = 0
    llm_lr: float | None = None  # their learning rate (null: task.lr)
    # also copy the result into $VZEXP_CACHE/trained/<publish>/, where a model config finds it as
    # ${vzexp_trained:<publish>} (weights too large to ship are built once per machine, then reused)
    publish: str | None = None
    # cosine: warm-up then cosine decay to zero (LLaVA's); constant: warm-up then the full lr
    schedule: str = "cosine"
    # false: keep the loaded projector and train the LLM layers alone (a second stage)
    tune_projector: bool = True
    # with tune_projector false and epochs > 1: the frozen LLM layers' output kept per sample
    # after the first epoch, so later epochs run the trained layers alone
    cache_trunk: bool = True
    # a recipe in stages (vzexp.stages): each a list of overrides added to the command line, run
    # in order, each from the weights the one before left; empty: this config is the one stage
    stages: list[Any] = field(default_factory=list)

    def __post_init__(self):
        super().__post_init__()
        if self.llm_layers < 0:
            raise ConfigError("task.llm_layers", self.llm_layers, "an integer >= 0")
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError("task.schedule", self.schedule, "cosine or constant")
        if not self.tune_projector and self.llm_layers == 0:
            raise ConfigError(
                "task.tune_projector",
                self.tune_projector,
                "true, or task.llm_layers >= 1 (with the projector frozen nothing would train)",
            )
        if self.llm_lr is not None and self.llm_lr <= 0:
            raise ConfigError("task.llm_lr", self.llm_lr, "a learning rate > 0, or null")
        for k, stage in enumerate(self.stages):
            if not (isinstance(stage, list) and all(isinstance(o, str) for o in stage)):
                raise ConfigError(
                    f"task.stages[{k}]",
                    stage,
                    "a list of overrides (e.g. [tokens=16, task.lr=3e-3])",
                )
        if self.publish is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", self.publish):
            raise ConfigError("task.publish", self.publish, "a plain name (letters, digits, _ . -)")
        for key in ("epochs", "batch_size", "accumulate"):
            if getattr(self, key) < 1:
                raise ConfigError(f"task.{key}", getattr(self, key), "an integer >= 1")
        if self.lr <= 0:
            raise ConfigError("task.lr", self.lr, "a learning rate > 0")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError("task.warmup_ratio", self.warmup_ratio, "a fraction in [0, 1)")
        if self.grad_clip < 0:
            raise ConfigError("task.grad_clip", self.grad_clip, "a max gradient norm >= 0")


TASKS = {
    "eval": TaskConfig,
    "build_tiny": BuildTinyTaskConfig,
    "score": ScoreTaskConfig,
    "tune": TuneTaskConfig,
}


@dataclass
class TrainDataConfig:
    """Training data of task=tune, in LLaVA's instruction format (vzexp.data.instruct)."""

    name: str
    path: str | None = None  # a LLaVA instruction JSON; null: the shapes train split (generated)
    image_root: str | None = None  # default: the JSON's directory
    scenes: int = 2000  # shapes only
    image_size: int = 112  # shapes only
    fraction: float = 1.0
    limit: int | None = None
    seed: int = 0
    max_turns: int | None = None  # keep each conversation's first N question-answer turns
    balance_yes_no: bool = False  # easy_vqa only: 2 yes/no turns (present, absent) come first
    present_twins: bool = False  # easy_vqa only: as many present-attribute yes/no as absent ones
    isolate_turns: bool = False  # each turn learned as if asked alone (vzexp.data.isolated_turns)
    answer_types: list[str] | None = None  # easy_vqa only: keep these questions ([color, shape])

    def __post_init__(self):
        if self.answer_types is not None:
            from vzexp.data.easy_vqa import ANSWER_TYPES

            bad = [t for t in self.answer_types if t not in ANSWER_TYPES]
            if bad or not self.answer_types:
                raise ConfigError(
                    "train_data.answer_types",
                    list(self.answer_types),
                    f"a non-empty list of {', '.join(ANSWER_TYPES)}, or null for all",
                )
        if self.max_turns is not None and self.max_turns < 1:
            raise ConfigError("train_data.max_turns", self.max_turns, "an integer >= 1, or null")
        if not 0.0 < self.fraction <= 1.0:
            raise ConfigError("train_data.fraction", self.fraction, "a fraction in (0, 1]")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("train_data.limit", self.limit, "an integer >= 1, or null for all")
        for key in ("balance_yes_no", "present_twins", "answer_types"):
            if getattr(self, key) and (self.path is not None or self.name != "easy_vqa"):
                off = "null" if key == "answer_types" else "false"
                raise ConfigError(
                    f"train_data.{key}",
                    getattr(self, key),
                    f"{off} unless train_data=easy_vqa (its own split)",
                )
        if self.path is None and self.name == "shapes" and self.scenes < 1:
            raise ConfigError("train_data.scenes", self.scenes, "an integer >= 1")


@dataclass
class TrainerConfig:
    # auto: the model's device and dtype decide (vzexp.hardware), resolved in validation
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1  # multi-node DDP (SLURM: hydra/launcher=slurm)
    strategy: str = "auto"
    precision: str = "auto"

    def __post_init__(self):
        if str(self.precision) not in PRECISIONS:
            raise ConfigError(
                "trainer.precision", self.precision, f"one of {', '.join(PRECISIONS)}"
            )
        for key in ("devices", "num_nodes"):
            if getattr(self, key) < 1:
                raise ConfigError(f"trainer.{key}", getattr(self, key), "an integer >= 1")


@dataclass
class LoggerConfig:
    name: str = "mlflow"
    tracking_uri: str | None = None
    experiment_name: str | None = None  # None: the +experiment name, else "vzexp"
    run_name: str | None = None

    def __post_init__(self):
        if self.name not in ("mlflow", "none"):
            raise ConfigError("logger.name", self.name, "mlflow or none")


@dataclass
class VzexpConfig:
    encoder: EncoderConfig
    llm: LLMConfig
    model: ModelConfig
    compressor: dict[str, Any]
    data: DataConfig
    task: Any
    trainer: TrainerConfig
    logger: LoggerConfig
    train_data: TrainDataConfig | None = None  # task=tune's training data (train_data=shapes)
    tokens: int = 64
    seed: int = 0
    verbose: bool = False

    def __post_init__(self):
        if self.tokens < 1:
            raise ConfigError("tokens", self.tokens, "a positive number of visual tokens per image")
        check_compressor(self.compressor)
        self.task = _to_schema(self.task, TASKS, "task")
        resolve_for_machine(self)
        if self.task.name == "tune":
            check_tune_precision(self.model.dtype, self.trainer.precision)


def resolve_for_machine(settings: VzexpConfig) -> None:
    """Every `auto` among model.dtype, model.device, trainer.accelerator and trainer.precision
    becomes this machine's concrete value (vzexp.hardware), so that every later consumer
    (predictions and checkpoint keys, model loading, the trainer) sees what runs."""
    from vzexp.hardware import resolve

    m, t = settings.model, settings.trainer
    r = resolve(m.dtype.value, m.device, t.accelerator, t.precision)
    m.dtype, m.device, t.accelerator, t.precision = (
        DType(r.dtype),
        r.device,
        r.accelerator,
        r.precision,
    )


# the autocast precision that trains float32 parts of a model loaded in this dtype
MIXED_FOR_DTYPE = {"bfloat16": "bf16-mixed", "float16": "16-mixed"}


def check_tune_precision(dtype: str, precision: str) -> None:
    """A model loaded in half precision trains its tuned parts in float32 under autocast;
    without autocast their products would mix dtypes."""
    mixed = MIXED_FOR_DTYPE.get(str(dtype))
    if mixed and str(precision) != mixed:
        raise ConfigError(
            "trainer.precision",
            precision,
            f"{mixed} with model.dtype={dtype} (the frozen model in {dtype}, the trained parts "
            "in float32 under autocast), or model.dtype=float32",
        )


def check_compressor(node: dict[str, Any]) -> None:
    """Compressor params are checked against the strategy class's constructor signature and type
    hints, so a new strategy needs no separate schema."""
    target = node.get("_target_")
    name = node.get("name", target)
    try:
        cls = get_class(target)
    except Exception as exc:  # an unimportable _target_ is a broken registry entry
        raise ConfigError("compressor._target_", target, f"an importable class ({exc})") from None
    params = inspect.signature(cls.__init__).parameters
    hints = typing.get_type_hints(cls.__init__)
    for key, value in node.items():
        if key in ("_target_", "name"):
            continue
        if key not in params:
            allowed = ", ".join(p for p in params if p != "self")
            raise ConfigError(
                f"compressor.{key}", value, f"not a parameter of '{name}' (it takes: {allowed})"
            )
        hint = hints.get(key)
        if hint is not None and value is not None and not _matches(value, hint):
            allowed = _type_name(hint)
            allowed = allowed if allowed.startswith("one of") else f"a value of type {allowed}"
            raise ConfigError(f"compressor.{key}", value, allowed)


def _matches(value: Any, hint: Any) -> bool:
    if typing.get_origin(hint) is typing.Literal:
        return value in typing.get_args(hint)
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, (list, ListConfig)) and all(_matches(v, item) for v in value)
    options = (
        typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType)
        else (hint,)
    )
    for option in options:
        if option is type(None):
            continue
        if typing.get_origin(option) in (list, typing.Literal):
            if _matches(value, option):
                return True
            continue
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if option in (str, bool) and isinstance(value, option):
            return True
        if option is typing.Any:
            return True
    return False


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _pretrained_dir(name: str) -> str:
    from vzexp.pretrained import pretrained_dir

    return str(pretrained_dir(name))


def register_configs() -> None:
    from vzexp.paths import resource_dir, trained_dir

    if not OmegaConf.has_resolver("vzexp_resource"):
        # ${vzexp_resource:tiny_shapes}: a directory shipped inside the package (works for wheels).
        OmegaConf.register_new_resolver("vzexp_resource", lambda name: str(resource_dir() / name))
    if not OmegaConf.has_resolver("vzexp_trained"):
        # ${vzexp_trained:small_real}: what a recipe with task.publish=small_real built here
        OmegaConf.register_new_resolver("vzexp_trained", lambda name: str(trained_dir(name)))
    if not OmegaConf.has_resolver("vzexp_pretrained"):
        # ${vzexp_pretrained:dinov2_small}: a part converted from a PyPI package into the cache
        # (on first use; vzexp.pretrained)
        OmegaConf.register_new_resolver("vzexp_pretrained", _pretrained_dir)
    cs = ConfigStore.instance()
    cs.store(name="vzexp_schema", node=VzexpConfig)
    for group, node in (
        ("encoder", EncoderConfig),
        ("llm", LLMConfig),
        ("model", ModelConfig),
        ("data", DataConfig),
        ("trainer", TrainerConfig),
        ("logger", LoggerConfig),
        ("train_data", TrainDataConfig),
    ):
        cs.store(group=group, name=f"{group}_schema", node=node)


def validate(cfg: DictConfig) -> VzexpConfig:
    """Composed config -> typed, range-checked settings; one-line ConfigError on any problem."""
    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    plain.pop("hydra", None)
    _check_missing(plain)
    return _merge(VzexpConfig, plain)


def _to_schema(plain: dict[str, Any], schemas: dict[str, type], key: str) -> Any:
    """A group whose options have different schemas (chosen by `name`) -> that option's dataclass."""
    name = plain.get("name")
    if name not in schemas:
        raise ConfigError(f"{key}.name", name, f"one of {', '.join(schemas)}")
    return _merge(schemas[name], plain, key)


def _merge(schema: type, plain: dict[str, Any], prefix: str = "") -> Any:
    """plain values -> the schema's dataclass; OmegaConf's type errors become one ConfigError
    naming the full key (`prefix.` + the key inside this node)."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), plain))
    except ConfigError:
        raise
    except OmegaConfBaseException as exc:
        inner = getattr(exc, "full_key", None) or ""
        full = ".".join(filter(None, (prefix, inner))) or "config"
        raise ConfigError(full, _offending_value(plain, inner), _first_line(exc)) from None


def as_plain(node: Any) -> dict[str, Any]:
    """A typed settings node (dataclass) -> plain dict with enums as strings, for builders."""
    return OmegaConf.to_container(OmegaConf.structured(node), resolve=True, enum_to_str=True)


def _check_missing(node: Any, prefix: str = "") -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _check_missing(v, f"{prefix}{k}.")
    elif node == "???":
        key = prefix.rstrip(".")
        raise ConfigError(
            key, None, f"a value is required; set it on the command line, e.g. {key}=/path/to/it"
        )


def _offending_value(plain: dict, key: str) -> Any:
    node: Any = plain
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _first_line(exc: Exception) -> str:
    msg = getattr(exc, "msg", None) or str(exc)
    line = msg.strip().splitlines()[0]
    # OmegaConf says "Value 'abc' of type 'str' could not be converted to Integer": keep the gist.
    if "could not be converted to" in line:
        return "expected " + line.split("could not be converted to", 1)[1].strip().lower()
    if line.startswith("Invalid value"):
        return "expected " + line.split(",", 1)[1].strip().replace("expected ", "")
    return line
