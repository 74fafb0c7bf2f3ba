"""A multirun sweep as ONE parent MLflow run with a child run per job (Hydra callback).

`on_multirun_start` (in the launching process) creates the parent through the MLflow client, so
it never becomes the active run of jobs that run in the same process, and writes its id into the
sweep directory; each job's run (vzexp.run) finds that file and tags itself with
`mlflow.parentRunId`, which is what the MLflow UI nests by. The keys the sweep varies go to a
second file there, so each job names its run after its own values of them (vzexp.tasks.base).

The parent is named after the `+experiment` (else "sweep") and described (command, grid, samples
per job); when the sweep ends it gets the params its children share, the best accuracy and the
child that reached it, and a table of every child (children.md / children.csv). It holds a
`vzexp.sweep.failed.<job>` tag per failed job. Hydra runs the other jobs, then skips
`on_multirun_end` when one failed, so an exit hook summarizes and ends the parent FAILED then.

Whatever the logger, each failed job leaves `<sweep dir>/.failed/<job>.txt` (written by the process
that ran it, so parallel launchers report too), and the sweep ends with one line naming them all."""

from __future__ import annotations

import atexit
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from vzexp import interrupt
from vzexp.tracking import PARENT_FILE, SWEEP_KEYS_FILE, parent_run_id

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


def sweep_overrides(config: DictConfig) -> list[str]:
    """The sweep as overrides: the sweeper's params (an experiment's grid), then the command
    line's."""
    overrides = list(OmegaConf.select(config, "hydra.overrides.task") or [])
    sweeper = OmegaConf.select(config, "hydra.sweeper.params") or {}
    return [f"{k}={v}" for k, v in sweeper.items()] + overrides


def varying_keys(overrides: list[str]) -> list[str]:
    """The keys (or config groups) that take several values across the sweep's jobs: lists
    (`tokens=8,24`) and Hydra's sweep functions (choice, range, interval)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return list(dict.fromkeys(o.key_or_group for o in parsed if o.is_sweep_override()))


def varying_keys_mask(overrides: list[str]) -> list[bool]:
    """Per override: whether it takes several values across the sweep."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return [o.is_sweep_override() for o in OverridesParser.create().parse_overrides(overrides)]


def description(command: str, grid: list[str], fixed: list[str], samples: str) -> str:
    """The parent's Markdown description (the `mlflow.note.content` tag the UI shows)."""
    lines = [f"`{command}`", "", f"- grid: {' x '.join(grid) if grid else '(one job)'}"]
    if fixed:
        lines.append(f"- fixed: {' '.join(fixed)}")
    lines.append(f"- samples per job: {samples}")
    return "\n".join(lines)


def shared_params(children) -> dict[str, str]:
    """The params every child logged with one same value."""
    if not children:
        return {}
    first = children[0].data.params
    return {k: v for k, v in first.items() if all(c.data.params.get(k) == v for c in children[1:])}


def children_table(children) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the sweep's children, best accuracy first: name, accuracy, samples,
    visual tokens, status and run id."""
    header = ["run", "accuracy", "samples", "visual_tokens", "status", "run_id"]

    def fmt(value) -> str:
        return "" if value is None else f"{value:.4g}"

    rows = []
    for c in sorted(children, key=lambda c: -c.data.metrics.get("accuracy", -1.0)):
        m = c.data.metrics
        rows.append(
            [
                c.info.run_name,
                fmt(m.get("accuracy")),
                fmt(m.get("samples")),
                fmt(m.get("visual_tokens")),
                c.info.status,
                c.info.run_id,
            ]
        )
    return header, rows


class MlflowSweepParent(Callback):
    def __init__(self) -> None:
        self.client = self.run_id = self.sweep_dir = None
        self.uri = self.experiment = self.command = None
        self.grid: list[str] = []
        self.fixed: list[str] = []

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = Path(OmegaConf.select(config, "hydra.sweep.dir"))
        atexit.register(self._summarize)  # on_multirun_end is skipped when a job failed
        sweep = sweep_overrides(config)
        keys = varying_keys(sweep)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        (self.sweep_dir / SWEEP_KEYS_FILE).write_text("\n".join(keys) + "\n")
        logger = config.get("logger", {})
        if logger.get("name") != "mlflow":
            return
        from vzexp.preflight import check_tracking_server
        from vzexp.tracking import (
            PROCESS_TAG,
            end_orphans,
            experiment_name,
            mark_model_training,
            open_store,
            process_identity,
            tracking_uri,
            typed_command,
        )

        uri = tracking_uri(logger.get("tracking_uri"))
        check_tracking_server(uri)
        choices = OmegaConf.select(config, "hydra.runtime.choices") or {}
        name = experiment_name(logger.get("experiment_name"), choices)
        # the schema is created once here, before any job (parallel launchers) opens the store
        self.client, experiment_id = open_store(uri, name)
        self.uri = uri
        end_orphans(self.client, experiment_id)  # an earlier sweep's parent killed with SIGKILL
        mark_model_training(self.client, self.client.get_experiment(experiment_id))
        self.experiment = name
        title = logger.get("run_name") or choices.get("experiment") or "sweep"
        self.command = typed_command()
        parsed = dict(zip(sweep, varying_keys_mask(sweep)))
        self.grid = [o for o, varies in parsed.items() if varies]
        self.fixed = [o for o, varies in parsed.items() if not varies]
        limit = OmegaConf.select(config, "data.limit")
        samples = f"data.limit={limit}" if limit is not None else "the whole benchmark"
        with interrupt.shielded():  # a signal meanwhile: raised once the parent can be ended
            run = self.client.create_run(
                experiment_id,
                run_name=title,
                tags={
                    "vzexp.sweep": "parent",
                    "vzexp.sweep.overrides": " ".join(sweep)[:5000],
                    "vzexp.command": self.command[:5000],
                    "mlflow.note.content": description(
                        self.command, self.grid, self.fixed, samples
                    ),
                    PROCESS_TAG: process_identity(),
                },
            )
            self.run_id = run.info.run_id
            (self.sweep_dir / PARENT_FILE).write_text(self.run_id)
            # unless on_multirun_end ends it first (KILLED when a signal stopped the sweep)
            atexit.register(self._end_at_exit, "FAILED")

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

        from vzexp.tracking import retry_locked, tracking_uri

        client = self.client or MlflowClient(tracking_uri(logger.get("tracking_uri")))
        with interrupt.shielded():
            retry_locked(lambda: client.set_tag(parent, f"vzexp.sweep.failed.{num}", reason[:5000]))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # a search sweeper's summary (hydra/sweeper=optuna) goes on the parent too
        results = Path(OmegaConf.select(config, "hydra.sweep.dir")) / "optuna_results.yaml"
        if self.client is not None and self.run_id and results.is_file():
            with interrupt.shielded():
                self.client.log_artifact(self.run_id, str(results))
        self._summarize()  # a search sweeper goes on past failed trials
        self._end("FINISHED")

    def _summarize(self) -> None:
        summary = failure_summary(self.sweep_dir) if self.sweep_dir else None
        if summary:
            print(summary, file=sys.stderr, flush=True)
        self.sweep_dir = None  # once

    def _end_at_exit(self, status: str) -> None:
        """`_end` from an exit hook, where a signal has nothing left to stop (and an exception
        would be printed as a traceback)."""
        with contextlib.suppress(interrupt.Interrupted):
            self._end(status)

    @interrupt.shielded()
    def _end(self, status: str) -> None:
        """End the parent `status` (KILLED when a signal stopped the sweep), with signals held
        and a locked store waited out, after its summary."""
        from vzexp.tracking import retry_locked

        if self.client is None or self.run_id is None:
            return
        if interrupt.received() is not None:
            status = "KILLED"
        if self.client.get_run(self.run_id).info.status == "RUNNING":
            try:
                self._summarize_parent()
            except Exception as exc:  # the summary is a convenience: the parent still ends
                print(f"vzexp: sweep: parent summary not logged: {exc}", file=sys.stderr)
            run_id = self.run_id
            retry_locked(lambda: self.client.set_terminated(run_id, status=status))
            print(
                f"vzexp: sweep: parent run {self.run_id} in experiment {self.experiment!r}; "
                f"browse it with: mlflow ui --backend-store-uri {self.uri}",
                flush=True,
            )
        self.run_id = None

    def _summarize_parent(self) -> None:
        """The children's shared params, the best accuracy and its child, the per-child table,
        and the description completed with the samples each job evaluated."""
        import csv
        import tempfile

        from mlflow.entities import Metric, Param

        parent = self.client.get_run(self.run_id)
        children = self.client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.run_id}'",
            max_results=5000,
        )
        shared = shared_params(children)
        params = [Param(k, v) for k, v in sorted(shared.items())]
        for start in range(0, len(params), 100):  # MLflow's batch limit
            self.client.log_batch(self.run_id, params=params[start : start + 100])
        scored = [c for c in children if "accuracy" in c.data.metrics]
        tags = {}
        if scored:
            best = max(scored, key=lambda c: c.data.metrics["accuracy"])
            now = int(time.time() * 1000)
            metrics = [
                Metric("best_accuracy", best.data.metrics["accuracy"], now, 0),
                Metric("children", float(len(children)), now, 0),
            ]
            self.client.log_batch(self.run_id, metrics=metrics)
            tags = {
                "vzexp.best.run_name": best.info.run_name,
                "vzexp.best.run_id": best.info.run_id,
            }
        counts = sorted({c.data.params.get("data.samples", "?") for c in children})
        tags["mlflow.note.content"] = description(
            self.command, self.grid, self.fixed, ", ".join(counts) or "none finished"
        )
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)
        header, rows = children_table(children)
        with tempfile.TemporaryDirectory() as tmp:
            with open(Path(tmp) / "children.csv", "w", newline="") as f:
                csv.writer(f).writerows([header, *rows])
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(row) + " |" for row in rows]
            (Path(tmp) / "children.md").write_text("\n".join(lines) + "\n")
            self.client.log_artifact(self.run_id, str(Path(tmp) / "children.md"))
            self.client.log_artifact(self.run_id, str(Path(tmp) / "children.csv"))
