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


def check_creatable(directory: Path, key: str = "hydra.run.dir") -> None:
    """Without creating it: the nearest existing ancestor must be a writable directory."""
    import os

    ancestor = directory
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        what = "is not a directory" if not ancestor.is_dir() else "is not writable"
        raise EnvironmentProblem(
            f"{key}={str(directory)!r}: cannot create the run's output directory ({ancestor} "
            f"{what}); choose a writable directory, e.g. {key}=/tmp/vzexp-run"
        )
    # os.access trusts permission bits, which root ignores; a read-only file system does not:
    # create (and remove) a probe directory to know for sure
    import tempfile

    try:
        os.rmdir(tempfile.mkdtemp(prefix=".vzexp-probe-", dir=ancestor))
    except OSError as exc:
        raise EnvironmentProblem(
            f"{key}={str(directory)!r}: cannot create the run's output directory ({ancestor}: "
            f"{exc.strerror}); choose a writable directory, e.g. {key}=/tmp/vzexp-run"
        ) from exc
