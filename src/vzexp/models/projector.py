"""A tuned projector on its own: saved beside its description by task=tune, logged as an MLflow
artifact, and loaded into a model by `model.projector=<directory, .safetensors file or run id>`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from safetensors.torch import load_file, save_file

from vzexp.atomic import atomic_path
from vzexp.errors import ConfigError, MissingPathError

WEIGHTS, INFO = "projector.safetensors", "projector.json"
ARTIFACT_PATH = "projector"
RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def save_projector(model, directory: Path, info: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in projector_of(model).state_dict().items()}
    with atomic_path(directory / WEIGHTS) as tmp:
        save_file(state, tmp)
    with atomic_path(directory / INFO) as tmp:
        tmp.write_text(json.dumps(info, indent=2, default=str))
    return directory


def projector_of(model):
    return model.model.multi_modal_projector


def resolve(ref: str, tracking_uri: str | None = None) -> Path:
    """A directory holding projector.safetensors, the file itself, or an MLflow run id whose
    `projector/` artifacts hold it (downloaded from the tracking store)."""
    path = Path(ref)
    if path.is_dir():
        path = path / WEIGHTS
    if path.is_file():
        return path
    if RUN_ID.match(ref):
        import mlflow

        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=ref, artifact_path=f"{ARTIFACT_PATH}/{WEIGHTS}", tracking_uri=tracking_uri
            )
        except Exception as exc:  # an unknown run, or a run without a tuned projector
            raise MissingPathError(
                f"model.projector={ref!r}: no {ARTIFACT_PATH}/{WEIGHTS} artifact in that MLflow "
                f"run ({type(exc).__name__}); give a task=tune run id or a projector directory"
            ) from None
        return Path(local)
    raise MissingPathError(
        f"model.projector={ref!r}: no such file or directory, and not an MLflow run id; give the "
        f"directory task=tune wrote (projector/ in its output) or its run id"
    )


def load_projector(model, ref: str, tracking_uri: str | None = None) -> Path:
    path = resolve(ref, tracking_uri)
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
    return path
