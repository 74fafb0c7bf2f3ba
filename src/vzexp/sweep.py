"""A multirun sweep as ONE parent MLflow run with a child run per job (Hydra callback).

`on_multirun_start` (in the launching process) creates the parent through the MLflow client, so
it never becomes the active run of jobs that run in the same process, and writes its id into the
sweep directory; each job's run (vzexp.run) finds that file and tags itself with
`mlflow.parentRunId`, which is what the MLflow UI nests by. The parent holds the sweep's overrides
and a `vzexp.sweep.failed.<job>` tag per failed job. Hydra runs the other jobs, then skips
`on_multirun_end` when one failed, so an exit hook ends the parent FAILED then.

Whatever the logger, each failed job leaves `<sweep dir>/.failed/<job>.txt` (written by the process
that ran it, so parallel launchers report too), and the sweep ends with one line naming them all."""

from __future__ import annotations

import atexit
import sys
from pathlib import Path
from typing import Any

from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from vzexp import interrupt
from vzexp.tracking import PARENT_FILE, parent_run_id

FAILED_DIR = ".failed"


class SweepJobError(CompactHydraException):
    """A sweep job's user error (its `__cause__`). Hydra prints a CompactHydraException as its
    message alone, so a failed sweep ends with one line per cause, not a traceback."""


def job_error(exc: BaseException) -> BaseException:
    """The error a job really raised, behind the SweepJobError that carried it out of Hydra."""
    return exc.__cause__ if isinstance(exc, SweepJobError) and exc.__cause__ else exc


def failure_summary(sweep_dir: str | Path) -> str | None:
    """One line naming every failed job of the sweep, from the files the jobs left."""
    files = sorted((Path(sweep_dir) / FAILED_DIR).glob("*.txt"), key=lambda p: int(p.stem))
    if not files:
        return None
    jobs = "; ".join(f"#{p.stem} {p.read_text().strip()}" for p in files)
    count = f"{len(files)} job{'s' if len(files) > 1 else ''}"
    return f"vzexp: sweep: {count} failed, the others ran to the end ({sweep_dir}): {jobs}"


class MlflowSweepParent(Callback):
    def __init__(self) -> None:
        self.client = self.run_id = self.sweep_dir = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = Path(OmegaConf.select(config, "hydra.sweep.dir"))
        atexit.register(self._summarize)  # on_multirun_end is skipped when a job failed
        logger = config.get("logger", {})
        if logger.get("name") != "mlflow":
            return
        from vzexp.preflight import check_tracking_server
        from vzexp.tracking import (
            PROCESS_TAG,
            end_orphans,
            experiment_name,
            open_store,
            process_identity,
            tracking_uri,
        )

        uri = tracking_uri(logger.get("tracking_uri"))
        check_tracking_server(uri)
        choices = OmegaConf.select(config, "hydra.runtime.choices") or {}
        name = experiment_name(logger.get("experiment_name"), choices)
        # the schema is created once here, before any job (parallel launchers) opens the store
        self.client, experiment_id = open_store(uri, name)
        end_orphans(self.client, experiment_id)  # an earlier sweep's parent killed with SIGKILL
        overrides = list(OmegaConf.select(config, "hydra.overrides.task") or [])
        sweeper = OmegaConf.select(config, "hydra.sweeper.params") or {}
        sweep = [f"{k}={v}" for k, v in sweeper.items()] + overrides
        title = logger.get("run_name") or choices.get("experiment") or "sweep"
        run = self.client.create_run(
            experiment_id,
            run_name=title,
            tags={
                "vzexp.sweep": "parent",
                "vzexp.sweep.overrides": " ".join(sweep)[:5000],
                PROCESS_TAG: process_identity(),
            },
        )
        self.run_id = run.info.run_id
        sweep_dir = Path(OmegaConf.select(config, "hydra.sweep.dir"))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_FILE).write_text(self.run_id)
        atexit.register(self._end, "FAILED")  # unless on_multirun_end ends it first (KILLED
        # when a signal stopped the sweep)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        """A failed job is recorded on the parent (one tag per job, so parallel launchers never
        overwrite each other): its number, overrides and error. The other jobs go on."""
        from hydra.core.utils import JobStatus

        if getattr(job_return, "status", None) != JobStatus.FAILED:
            return
        num = OmegaConf.select(config, "hydra.job.num")
        overrides = " ".join(OmegaConf.select(config, "hydra.overrides.task") or [])
        error = job_error(job_return._return_value)
        reason = f"{overrides} :: {type(error).__name__}: {error}"
        sweep_dir = OmegaConf.select(config, "hydra.sweep.dir")
        if sweep_dir:
            failed = Path(sweep_dir) / FAILED_DIR
            failed.mkdir(parents=True, exist_ok=True)
            (failed / f"{num}.txt").write_text(f"({overrides}): {error}")
        logger = config.get("logger", {})
        parent = parent_run_id(sweep_dir) if sweep_dir else None
        if logger.get("name") != "mlflow" or parent is None:
            return
        from mlflow.tracking import MlflowClient

        from vzexp.tracking import tracking_uri

        client = self.client or MlflowClient(tracking_uri(logger.get("tracking_uri")))
        client.set_tag(parent, f"vzexp.sweep.failed.{num}", reason[:5000])

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # a search sweeper's summary (hydra/sweeper=optuna) goes on the parent too
        results = Path(OmegaConf.select(config, "hydra.sweep.dir")) / "optuna_results.yaml"
        if self.client is not None and self.run_id and results.is_file():
            self.client.log_artifact(self.run_id, str(results))
        self._summarize()  # a search sweeper goes on past failed trials
        self._end("FINISHED")

    def _summarize(self) -> None:
        summary = failure_summary(self.sweep_dir) if self.sweep_dir else None
        if summary:
            print(summary, file=sys.stderr, flush=True)
        self.sweep_dir = None  # once

    def _end(self, status: str) -> None:
        if self.client is None or self.run_id is None:
            return
        if interrupt.received() is not None:
            status = "KILLED"
        if self.client.get_run(self.run_id).info.status == "RUNNING":
            self.client.set_terminated(self.run_id, status=status)
        self.run_id = None
