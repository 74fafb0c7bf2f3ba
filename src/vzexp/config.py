"""Typed schemas for the composed config, registered in Hydra's ConfigStore, and validation.

`validate(cfg)` merges the composed config into these dataclasses (type errors), then
`__post_init__` range-checks; both end as one `ConfigError` line naming key, value and what is
allowed, before any model is loaded.
"""

from __future__ import annotations

import inspect
import types
import typing
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

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
    # LLaVA-1.5's `image_aspect_ratio=pad`, the rule of its evaluation: each image centred on a
    # square of the processor's mean colour before it is resized; false: resized and
    # centre-cropped; null: the processor's own setting
    image_pad: bool | None = None

    def __post_init__(self):
        if self.kind == ModelKind.checkpoint and not self.path:
            raise ConfigError(
                "model.path",
                self.path,
                "a local checkpoint directory (e.g. model.path=/models/llava-1.5-7b-hf)",
            )
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
    # exact_match, or a Scorer by its dotted path (vzexp.data.benchmarks.pope.scorer)
    scorer: str = "exact_match"
    # the file a split without gold answers is submitted in, to the server that scores it: a
    # Submission by its dotted path (vzexp.data.benchmarks.vqav2.submission); null: none
    submission: str | None = None
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
class PathsConfig:
    # the real benchmarks' files, one folder per benchmark (gqa/, MME/, pope/, ...) in LLaVA's
    # playground/data/eval layout or as lmms-eval's parquet snapshots; each benchmark's
    # data.root defaults to its folder there. null: unset (give data.root)
    eval_root: str | None = None

    def __post_init__(self):
        if self.eval_root is not None and (
            not self.eval_root.strip() or Path(self.eval_root).expanduser().is_file()
        ):
            raise ConfigError(
                "paths.eval_root",
                self.eval_root,
                "a directory with one folder per benchmark (gqa/, MME/, ...), e.g. "
                "paths.eval_root=/data/eval, or null",
            )


PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")


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
    system_metrics: bool = False  # MLflow's CPU/GPU/memory metrics during the run (psutil)

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
    # the task's own schema (vzexp.tasks), chosen by the `_target_` of conf/task/<name>.yaml
    task: Any
    trainer: TrainerConfig
    logger: LoggerConfig
    # task=tune's training data: a schema of vzexp.data chosen by its `_target_`
    train_data: Any = None
    paths: PathsConfig = field(default_factory=PathsConfig)
    tokens: int = 64
    seed: int = 0
    verbose: bool = False

    def __post_init__(self):
        if self.tokens < 1:
            raise ConfigError("tokens", self.tokens, "a positive number of visual tokens per image")
        check_compressor(self.compressor)
        self.task = to_schema(self.task, "task")
        resolve_for_machine(self)
        if self.train_data is not None:
            self.train_data = to_schema(self.train_data, "train_data")
        self.task.check(self)


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


def _under(root: Any, name: str) -> str | None:
    if root is None or isinstance(root, (ListConfig, DictConfig, list, dict)):
        return None  # unset, or not a path (the schema says so of paths.eval_root)
    return str(Path(str(root)) / name)


def register_configs() -> None:
    """The resolvers the YAML files use. The schemas are applied by `validate`, not through
    Hydra's ConfigStore, so a group lists only its YAML options."""
    from vzexp.paths import resource_dir, trained_dir

    if not OmegaConf.has_resolver("vzexp_resource"):
        # ${vzexp_resource:tiny_shapes}: a directory shipped inside the package (works for wheels).
        OmegaConf.register_new_resolver("vzexp_resource", lambda name: str(resource_dir() / name))
    if not OmegaConf.has_resolver("vzexp_trained"):
        # ${vzexp_trained:small_real}: what a recipe with task.publish=small_real built here
        OmegaConf.register_new_resolver("vzexp_trained", lambda name: str(trained_dir(name)))
    if not OmegaConf.has_resolver("vzexp_under"):
        # ${vzexp_under:${paths.eval_root},pope}: the folder `pope` under paths.eval_root, or
        # null while paths.eval_root is unset
        OmegaConf.register_new_resolver("vzexp_under", _under)
    if not OmegaConf.has_resolver("vzexp_pretrained"):
        # ${vzexp_pretrained:dinov2_small}: a part converted from a PyPI package into the cache
        # (on first use; vzexp.pretrained)
        OmegaConf.register_new_resolver("vzexp_pretrained", _pretrained_dir)


def validate(cfg: DictConfig) -> VzexpConfig:
    """Composed config -> typed, range-checked settings; one-line ConfigError on any problem."""
    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    plain.pop("hydra", None)
    _check_missing(plain)
    return _merge(VzexpConfig, plain)


def to_schema(plain: dict[str, Any], key: str) -> Any:
    """A group whose options have schemas of their own (task, train_data): the class named by
    the option's `_target_`, filled with its values. The config tree is the registry: a new
    option is a YAML naming its class, with no list to edit here."""
    node = dict(plain)
    target = node.pop("_target_", None)
    try:
        schema = get_class(target)
    except Exception as exc:
        raise ConfigError(
            f"{key}._target_", target, f"an importable schema class ({exc})"
        ) from None
    return _merge(schema, node, key)


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
        raise ConfigError(full, _offending_value(plain, inner), omegaconf_reason(exc)) from None


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


def omegaconf_reason(exc: Exception) -> str:
    """The gist of an OmegaConf validation error, as the `allowed` clause of a ConfigError."""
    msg = getattr(exc, "msg", None) or str(exc)
    line = msg.strip().splitlines()[0]
    # OmegaConf says "Value 'abc' of type 'str' could not be converted to Integer": keep the gist.
    if "could not be converted to" in line:
        return "expected " + line.split("could not be converted to", 1)[1].strip().lower()
    if line.startswith("Invalid value"):
        return "expected " + line.split(",", 1)[1].strip().replace("expected ", "")
    return line
