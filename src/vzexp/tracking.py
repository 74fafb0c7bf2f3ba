"""MLflow runs: one per job, flattened config as params, failure ends the run FAILED."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
# the file in a sweep's directory that names the sweep's parent run (vzexp.sweep writes it)
PARENT_FILE = ".mlflow_parent_run"


def parent_run_id(sweep_dir: str | Path) -> str | None:
    path = Path(sweep_dir) / PARENT_FILE
    return path.read_text().strip() if path.is_file() else None


def tracking_uri(configured: str | None = None) -> str:
    """The configured URI, else MLFLOW_TRACKING_URI, else MLflow's own default store (SQLite)
    in the working directory, as an absolute URI so that sweeps write to one place."""
    return (
        configured
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    )


def download_artifacts(run_id: str, artifact_path: str, uri: str | None = None) -> Path:
    """A local copy of a run's artifacts under `artifact_path` (a file or a directory), from the
    store `uri` (resolved as tracking_uri does). Raises MLflow's error for an unknown run or
    path."""
    import mlflow

    return Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact_path, tracking_uri=tracking_uri(uri)
        )
    )


def is_sweep_parent(run) -> bool:
    """The parent run of a multirun sweep (vzexp.sweep): it holds no job's params or metrics."""
    return run.data.tags.get("vzexp.sweep") == "parent"


def flatten(node: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
    elif isinstance(node, (list, tuple)) and node and all(isinstance(v, dict) for v in node):
        for i, value in enumerate(node):
            out.update(flatten(value, f"{prefix}{i}."))
    else:
        out[prefix.rstrip(".")] = str(node)[:MAX_PARAM_CHARS]
    return out


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


class NullRun:
    """Stand-in when logging is off: the same calls, no effects."""

    info = None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_dataset(self, name: str, ids: list[str], **meta: Any) -> None: ...


class MlflowRun:
    def __init__(self, run):
        import mlflow

        self._mlflow, self.info = mlflow, run.info

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._mlflow.set_tags(tags)

    def log_params(self, params: dict[str, Any]) -> None:
        """Params known only once the task runs (a key must not be logged twice)."""
        self._mlflow.log_params({k: str(v)[:MAX_PARAM_CHARS] for k, v in params.items()})

    def log_dataset(self, name: str, ids: list[str], **meta: Any) -> None:
        """The evaluated samples as the run's input (the UI's Dataset column; see
        `dataset_input`)."""
        dataset, tags = dataset_input(name, ids, **meta)
        self._mlflow.log_input(dataset, context="eval", tags=tags)


DEFAULT_EXPERIMENT = "vzexp"


def experiment_name(configured: str | None, choices: dict | None) -> str:
    """The MLflow experiment: logger.experiment_name when set, else the Hydra experiment config
    chosen with +experiment=NAME (so each shipped sweep lands in its own experiment), else vzexp."""
    return configured or (choices or {}).get("experiment") or DEFAULT_EXPERIMENT


@contextmanager
def tracked_run(
    enabled: bool,
    params: dict[str, Any],
    experiment_name: str,
    run_name: str | None,
    uri: str | None,
    tags: dict[str, str] | None = None,
    system_metrics: bool = False,
) -> Iterator[NullRun | MlflowRun]:
    if not enabled:
        yield NullRun()
        return
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(uri))
    mark_model_training(mlflow.MlflowClient(), mlflow.set_experiment(experiment_name))
    base_tags = {"vzexp.command": typed_command()}
    if commit := git_commit():
        base_tags["mlflow.source.git.commit"] = commit
    # None leaves MLflow's own switch (MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING) in charge
    with mlflow.start_run(run_name=run_name, log_system_metrics=system_metrics or None) as run:
        mlflow.set_tags({**base_tags, **(tags or {})})
        mlflow.log_params(flatten(params))
        try:
            yield MlflowRun(run)
        except BaseException as exc:
            mlflow.set_tag("vzexp.error", f"{type(exc).__name__}: {exc}"[:5000])
            mlflow.end_run(status="FAILED")
            raise


def dataset_input(name: str, ids: list[str], **meta: Any):
    """(MLflow dataset, input tags) for the samples `ids` of benchmark `name`: a MetaDataset
    whose digest hashes the sample ids in order, so runs over the same questions share it and a
    changed limit or split shows as another dataset; `meta` (split, limit, ...) goes to the
    source and the input's tags."""
    import hashlib

    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
    described = {k: str(v) for k, v in meta.items() if v is not None}
    source = CodeDatasetSource(tags={"benchmark": name, **described})
    tags = {"samples": str(len(ids)), **described}
    return MetaDataset(source=source, name=name, digest=digest), tags


# the file in a sweep's directory that lists the keys the sweep varies (vzexp.sweep writes it)
SWEEP_KEYS_FILE = ".vzexp_sweep_keys"


def sweep_keys(sweep_dir: str | Path) -> list[str]:
    """The config keys a sweep varies (one per line of SWEEP_KEYS_FILE); none outside a sweep."""
    path = Path(sweep_dir) / SWEEP_KEYS_FILE
    return path.read_text().split() if path.is_file() else []


# metrics that time or size the run's own computation: a resumed run reports them over the
# samples it computed only
TIMING_SUFFIXES = ("_ms_per_sample", "_ms", "_s", "_seconds")
TIMING_KEYS = ("selection_overhead", "peak_memory_mb", "dialogue_time_saved")


def is_timing_metric(key: str) -> bool:
    return key.endswith(TIMING_SUFFIXES) or key in TIMING_KEYS


def typed_command() -> str:
    """The command line as typed: `python -m vzexp ...` rather than the path of __main__.py."""
    program = Path(sys.argv[0])
    if program.name == "__main__.py":
        return " ".join(["python -m", program.parent.name, *sys.argv[1:]])
    return " ".join([program.name, *sys.argv[1:]])


# MLflow 3's UI opens an experiment of no recorded kind in its GenAI view and asks the user
# which kind it is; this experiment tag records the answer "Model training" (runs table,
# params, metrics), the view vzexp's runs are read in
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"


def mark_model_training(client, experiment) -> None:
    """Record `experiment` as a model-training experiment unless a kind is recorded already
    (a user's choice in the UI stands)."""
    if EXPERIMENT_KIND not in (experiment.tags or {}):
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
