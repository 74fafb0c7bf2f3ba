"""Checks of the environment a run needs, made before any model is loaded or run is opened, so
that a wrong device, an unreachable tracking server or an uncreatable output directory costs
seconds and gives one line saying what to change."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from vzexp.errors import ConfigError, VzexpError


class EnvironmentProblem(VzexpError):
    """Something outside the config (a server, a directory, a device) is not usable."""


def check_devices(model_device: str, accelerator: str) -> None:
    import torch

    cuda = torch.cuda.is_available()
    if str(model_device).startswith("cuda") and not cuda:
        raise ConfigError(
            "model.device",
            model_device,
            "cpu here: this machine has no CUDA device (or torch "
            "is a CPU build); use model.device=cpu",
        )
    if accelerator in ("gpu", "cuda") and not cuda:
        raise ConfigError(
            "trainer.accelerator",
            accelerator,
            "cpu here: this machine has no CUDA device; use trainer=cpu",
        )


def check_tracking_server(uri: str, timeout: float = 5.0) -> None:
    """An http(s) MLflow server must answer its health endpoint within `timeout` seconds
    (MLflow's client would otherwise retry for minutes before failing)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout).close()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EnvironmentProblem(
            f"logger.tracking_uri={uri!r}: no MLflow server answers there ({reason}); start it "
            f"(mlflow server --host {parsed.hostname} --port {parsed.port or 80}), fix "
            "MLFLOW_TRACKING_URI, or run with logger=none"
        ) from None


def check_creatable(
    directory: Path,
    key: str = "hydra.run.dir",
    what: str = "the run's output directory",
    fix: str | None = None,
) -> None:
    """Without creating it: the nearest existing ancestor must be a writable directory."""
    fix = fix or f"choose a writable directory, e.g. {key}=/tmp/vzexp-run"
    import os

    ancestor = directory
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        problem = "is not a directory" if not ancestor.is_dir() else "is not writable"
        raise EnvironmentProblem(
            f"{key}={str(directory)!r}: cannot create {what} ({ancestor} {problem}); {fix}"
        )
    # os.access trusts permission bits, which root ignores; a read-only file system does not:
    # create (and remove) a probe directory to know for sure
    import tempfile

    try:
        os.rmdir(tempfile.mkdtemp(prefix=".vzexp-probe-", dir=ancestor))
    except OSError as exc:
        raise EnvironmentProblem(
            f"{key}={str(directory)!r}: cannot create {what} ({ancestor}: {exc.strerror}); {fix}"
        ) from exc


SEED_MAX = 2**32 - 1  # numpy's seeds (and Lightning's seed_everything) are unsigned 32-bit
NAME_MAX = 250  # MLflow's stores keep experiment and run names up to this length


def check_values(settings) -> None:
    """Values the schemas accept but a library refuses deep in the run: seeds, MLflow names
    and the predictions directory."""
    if not 0 <= settings.seed <= SEED_MAX:
        raise ConfigError("seed", settings.seed, f"an integer in 0..{SEED_MAX}")
    for key in ("experiment_name", "run_name"):
        value = getattr(settings.logger, key, None)
        if value is not None and not 0 < len(str(value)) <= NAME_MAX:
            shown = str(value) if len(str(value)) <= 40 else f"{str(value)[:40]}..."
            raise ConfigError(
                f"logger.{key}",
                shown,
                f"a name of 1..{NAME_MAX} characters ({len(str(value))} given)",
            )
    directory = getattr(settings.task, "predictions_dir", None)
    if directory is not None:
        check_creatable(Path(directory), "task.predictions_dir", "the predictions directory")


STORE_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def check_tracking_uri(uri: str) -> None:
    """The tracking URI names a store MLflow can use here: a known scheme (not the file store,
    which MLflow no longer writes), and for SQLite a database file that is one and that this
    process can write, in a directory it can write."""
    scheme = urlparse(uri).scheme.split("+", 1)[0]
    if scheme in ("", "file"):
        raise ConfigError(
            "logger.tracking_uri",
            uri,
            "a database or server URI: MLflow no longer writes file stores; use "
            "sqlite:///mlflow.db (or an http(s):// server)",
        )
    if scheme not in STORE_SCHEMES:
        raise ConfigError(
            "logger.tracking_uri", uri, f"a URI with one of the schemes {', '.join(STORE_SCHEMES)}"
        )
    if scheme != "sqlite" or not uri.startswith("sqlite:///"):
        return
    db = Path(uri[len("sqlite:///") :].split("?", 1)[0])
    if str(db) == ":memory:":
        return
    recover = f"move it away (mv {db} {db}.broken) to start a new store, or run with logger=none"
    if db.is_dir():
        raise EnvironmentProblem(
            f"logger.tracking_uri={uri!r}: {db} is a directory, not a database"
        )
    if db.is_file():
        with db.open("rb") as f:
            header = f.read(16)
        if header and header != b"SQLite format 3\x00":
            raise EnvironmentProblem(
                f"logger.tracking_uri={uri!r}: {db} is not an SQLite database; {recover}"
            )
        import os

        if not os.access(db, os.W_OK):
            raise EnvironmentProblem(
                f"logger.tracking_uri={uri!r}: {db} is read-only; make it writable "
                f"(chmod u+w {db}), point logger.tracking_uri elsewhere, or run with logger=none"
            )
    fix = "point it at a writable directory (sqlite:////tmp/mlflow.db) or run with logger=none"
    check_creatable(db.parent, "logger.tracking_uri", "the MLflow database there", fix)
