"""A tuned projector on its own: saved beside its description by task=tune, logged as an MLflow
artifact, and loaded into a model by `model.projector=<directory, .safetensors file or run id>`.

A run id is resolved by the caller's `download(run_id, artifact_path) -> local directory`
(vzexp.tracking.download_artifacts bound to the run's store): this module reads local files only."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import load_file, save_file

from vzexp.atomic import atomic_path
from vzexp.errors import ConfigError, MissingPathError

WEIGHTS, INFO = "projector.safetensors", "projector.json"
LLM_LAYERS = "llm_layers.safetensors"  # the LLM's last layers, when task.llm_layers trained them
ARTIFACT_PATH = "projector"
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
# (run id, artifact path) -> the local directory the run's artifacts under that path were copied to
Download = Callable[[str, str], Path]


def save_projector(model, directory: Path, info: dict, llm_layers: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in projector_of(model).state_dict().items()}
    with atomic_path(directory / WEIGHTS) as tmp:
        save_file(state, tmp)
    if llm_layers:
        layers = model.model.language_model.layers
        first = len(layers) - llm_layers
        tail = {
            f"{first + i}.{k}": v.detach().cpu().contiguous()
            for i, layer in enumerate(list(layers)[first:])
            for k, v in layer.state_dict().items()
        }
        with atomic_path(directory / LLM_LAYERS) as tmp:
            save_file(tail, tmp)
        info = {**info, "llm_layers": list(range(first, len(layers)))}
    with atomic_path(directory / INFO) as tmp:
        tmp.write_text(json.dumps(info, indent=2, default=str))
    return directory


def publish(directory: Path, name: str) -> Path:
    """Copy a tuned projector directory to trained_dir(name), replacing an earlier build only once
    the copy is whole (so a model config pointing there never sees half a build)."""
    from vzexp.paths import trained_dir

    target = trained_dir(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{name}.tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(directory, staging)
    old = target.with_name(f".{name}.old{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def projector_of(model):
    return model.model.multi_modal_projector


def resolve(ref: str, download: Download | None = None) -> Path:
    """A directory holding projector.safetensors, the file itself, or (given `download`) an
    MLflow run id whose `projector/` artifacts hold it."""
    path = Path(ref)
    if path.is_dir():
        path = path / WEIGHTS
    if path.is_file():
        return path
    if RUN_ID.match(ref):
        if download is None:
            raise MissingPathError(
                f"model.projector={ref!r}: an MLflow run id, and no tracking store to download "
                "its artifacts from here; give the projector directory instead"
            )
        try:
            local = Path(download(ref, ARTIFACT_PATH)) / WEIGHTS
        except Exception as exc:  # an unknown run, or a run without a tuned projector
            raise MissingPathError(
                f"model.projector={ref!r}: no {ARTIFACT_PATH}/{WEIGHTS} artifact in that MLflow "
                f"run ({type(exc).__name__}); give a task=tune run id or a projector directory"
            ) from None
        if not local.is_file():
            raise MissingPathError(
                f"model.projector={ref!r}: no {ARTIFACT_PATH}/{WEIGHTS} artifact in that MLflow "
                "run; give a task=tune run id or a projector directory"
            )
        return local
    unbuilt = _unbuilt_name(path)
    if unbuilt:
        raise MissingPathError(
            f"model.projector={ref!r}: not built on this machine yet; build it once with "
            f"python -m vzexp +experiment=build_{unbuilt} (it publishes there), or give another "
            f"projector directory or run id"
        )
    raise MissingPathError(
        f"model.projector={ref!r}: no such file or directory, and not an MLflow run id; give the "
        f"directory task=tune wrote (projector/ in its output) or its run id"
    )


def _unbuilt_name(path: Path) -> str | None:
    """The publish name when `path` is in the trained cache (${vzexp_trained:NAME}), else None."""
    from vzexp.paths import trained_root

    root = trained_root().resolve()
    resolved = path.resolve()
    if resolved.is_relative_to(root) and resolved != root:
        return resolved.relative_to(root).parts[0]
    return None


def load_projector(model, ref: str, download: Download | None = None) -> Path:
    """The projector `ref` names (see resolve) into the model's own, with the tuned last LLM
    layers saved beside it when there are any. Returns the weights file read."""
    path = resolve(ref, download)
    state = load_file(path)
    target = projector_of(model)
    expected = {k: tuple(v.shape) for k, v in target.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if found != expected:
        raise ConfigError(
            "model.projector",
            ref,
            f"a projector of this model's shape {expected} (that file has {found})",
        )
    target.load_state_dict({k: v.to(next(target.parameters()).dtype) for k, v in state.items()})
    tail = path.with_name(LLM_LAYERS)
    if tail.is_file():  # absent after a projector-only tuning
        load_llm_layers(model, tail, ref)
    return path


def load_llm_layers(model, path: Path, ref: str) -> None:
    """The tuned last LLM layers saved beside a projector, into the model's own layers."""
    layers = model.model.language_model.layers
    by_layer: dict[int, dict] = {}
    for key, value in load_file(path).items():
        index, _, name = key.partition(".")
        by_layer.setdefault(int(index), {})[name] = value
    for index, state in by_layer.items():
        if index >= len(layers):
            raise ConfigError(
                "model.projector", ref, f"tuned LLM layers of this model ({len(layers)} layers)"
            )
        dtype = next(layers[index].parameters()).dtype
        layers[index].load_state_dict({k: v.to(dtype) for k, v in state.items()})
