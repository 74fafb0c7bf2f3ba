"""MLflow runs: one per job, flattened config as params; a failure ends the run FAILED, a signal
KILLED, and a run whose process died without ending it (SIGKILL) is ended KILLED by the next run
on this machine. A SQLite store is created under a file lock, so concurrent first runs do not
race through MLflow's schema migration.

Every call that reads or writes the store runs with signals held (`interrupt.shielded()`): a
SIGTERM or SIGINT is acted on once the call is done, never inside a SQLite transaction. The run's
writes and its end wait out a store locked by another process or thread (`retry_locked`), so that
a run stopped or failed is not left RUNNING."""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vzexp import interrupt
from vzexp.errors import VzexpError, first_line

log = logging.getLogger("vzexp")
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


# how long a write waits out a store locked by another process or thread (MLflow's SQLite
# connections also wait up to their busy timeout on each try)
LOCKED_WAIT_SECONDS = 30.0


def is_locked(exc: BaseException) -> bool:
    """A SQLite store busy with another writer (MLflow wraps sqlite3's OperationalError)."""
    return "database is locked" in str(exc) or "database is busy" in str(exc)


def retry_locked(write, wait: float | None = None, first_delay: float = 0.5):
    """`write()`, tried again with a growing pause while the store is locked, until `wait`
    seconds (LOCKED_WAIT_SECONDS) have passed; any other error, or the lock outlasting the wait,
    is raised."""
    deadline = time.monotonic() + (LOCKED_WAIT_SECONDS if wait is None else wait)
    delay = first_delay
    while True:
        try:
            return write()
        except Exception as exc:
            if not is_locked(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(2 * delay, 8.0)


def store_write(method):
    """A write to the store: signals held until it is done (`interrupt.shielded`), a locked store
    waited out (`retry_locked`)."""

    @functools.wraps(method)
    def write(*args, **kwargs):
        with interrupt.shielded():
            return retry_locked(lambda: method(*args, **kwargs))

    return write


class MlflowRun:
    """The job's run; each call is one write to the store (`store_write`)."""

    def __init__(self, run):
        import mlflow

        self._mlflow, self.info = mlflow, run.info

    @store_write
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    @store_write
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._mlflow.log_artifact(str(path), artifact_path=artifact_path)

    @store_write
    def set_tags(self, tags: dict[str, str]) -> None:
        self._mlflow.set_tags(tags)

    @store_write
    def log_params(self, params: dict[str, Any]) -> None:
        """Params known only once the task runs (a key must not be logged twice)."""
        self._mlflow.log_params({k: str(v)[:MAX_PARAM_CHARS] for k, v in params.items()})

    @store_write
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


class StoreError(VzexpError):
    """The MLflow store cannot be opened or written; the message says how to recover."""


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI (None for other stores and in-memory SQLite)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]  # four slashes: an absolute path
    return Path(path) if path and path != ":memory:" else None


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Exclusive across processes for a SQLite store (a lock on `<db>.lock` beside it): MLflow
    creates and migrates the schema on the first connection, which concurrent processes race
    through; other stores need no lock."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def store_error(uri: str, exc: BaseException) -> StoreError:
    """A store that MLflow could not open, as one line with the way out."""
    db = sqlite_path(uri)
    how = (
        f"if it is damaged, move it away (mv {db} {db}.broken) and rerun to start a new store"
        if db is not None
        else "check the URI and the server"
    )
    return StoreError(
        f"logger.tracking_uri={uri!r}: the MLflow store cannot be used ({first_line(exc)}); "
        f"{how}, or run with logger=none"
    )


@interrupt.shielded()
def open_store(uri: str, experiment: str | None = None):
    """An MlflowClient on `uri` with its schema created (under the store lock), and the id of
    `experiment` (created when missing) when one is named."""
    from mlflow.tracking import MlflowClient

    try:
        with store_lock(uri):
            client = MlflowClient(uri)
            client.search_experiments(max_results=1)  # creates or upgrades the schema
            if experiment is None:
                return client, None
            found = client.get_experiment_by_name(experiment)
            return client, found.experiment_id if found else client.create_experiment(experiment)
    except VzexpError:
        raise
    except Exception as exc:  # sqlite3/SQLAlchemy/MLflow errors: a damaged or read-only store
        raise store_error(uri, exc) from None


def process_identity(pid: int | None = None) -> str:
    """`<host>:<pid>:<start time>` of a process: tells a live run from one whose process died
    (the start time tells a reused pid apart)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def _start_time(pid: int) -> str:
    try:  # field 22 of /proc/<pid>/stat, after the parenthesised command name
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def process_alive(identity: str) -> bool:
    """Whether the process an identity names still runs (unknown hosts count as alive)."""
    host, _, rest = identity.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True
    return state[0] != "Z" and (not started or state[19] == started)


PROCESS_TAG = "vzexp.process"


@interrupt.shielded()
def end_orphans(client, experiment_id: str) -> list[str]:
    """End KILLED the runs of this experiment left RUNNING by a process of this machine that
    no longer runs (SIGKILL, power loss); returns their ids. A run the store refuses to end now
    stays for the next run to try (this run goes on)."""
    ended = []
    try:
        found = client.search_runs(
            [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
        )
    except Exception:  # a store that cannot search: the run itself reports the problem
        return ended
    for run in found:
        identity = run.data.tags.get(PROCESS_TAG)
        if identity and not process_alive(identity):
            try:
                client.set_tag(
                    run.info.run_id,
                    "vzexp.error",
                    f"Killed: its process ({identity}) ended without ending the run; ended by a "
                    "later run on this machine",
                )
                client.set_terminated(run.info.run_id, status="KILLED")
            except Exception as exc:
                log.warning(
                    "run %s left RUNNING by a dead process: not ended (%s)",
                    run.info.run_id,
                    first_line(exc),
                )
                continue
            ended.append(run.info.run_id)
    return ended


@interrupt.shielded()
def end_run(client, run_id: str, status: str, error: str | None = None) -> None:
    """End the job's run `run_id` with `status` (and `error` as its `vzexp.error` tag), waiting
    out a locked store (`retry_locked`). The tag is best effort: the run is ended without it
    when the store refuses it. Raises StoreError when the run cannot be ended; it stays RUNNING
    until the next run on this machine ends it KILLED (`end_orphans`)."""
    import mlflow

    if error is not None:
        try:
            retry_locked(lambda: client.set_tag(run_id, "vzexp.error", error[:5000]))
        except Exception as exc:
            log.warning("run %s: the vzexp.error tag was not written (%s)", run_id, first_line(exc))

    def terminate() -> None:
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run_id:
            mlflow.end_run(status)  # also stops its system-metrics thread
        else:  # a try before this one left the active runs already
            client.set_terminated(run_id, status=status)

    try:
        retry_locked(terminate)
    except Exception as exc:
        raise StoreError(
            f"the MLflow run {run_id} could not be ended {status} ({first_line(exc)}); the next "
            "run on this machine ends it KILLED"
        ) from None


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

    uri = tracking_uri(uri)
    base_tags = {"vzexp.command": typed_command(), PROCESS_TAG: process_identity()}
    if commit := git_commit():
        base_tags["mlflow.source.git.commit"] = commit
    run = client = None
    try:
        with interrupt.shielded():  # a signal meanwhile is raised once the run is open
            client, experiment_id = open_store(uri, experiment_name)
            end_orphans(client, experiment_id)
            mark_model_training(client, client.get_experiment(experiment_id))
            mlflow.set_tracking_uri(uri)
            try:
                # None leaves MLflow's own switch (MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING) in charge
                run = mlflow.start_run(
                    run_name=run_name,
                    experiment_id=experiment_id,
                    log_system_metrics=system_metrics or None,
                )
            except Exception as exc:  # e.g. a read-only database file
                raise store_error(uri, exc) from None
            retry_locked(lambda: mlflow.set_tags({**base_tags, **(tags or {})}))
            retry_locked(lambda: mlflow.log_params(flatten(params)))
        yield MlflowRun(run)
    except BaseException as exc:
        if run is not None:
            killed = isinstance(exc, (interrupt.Interrupted, KeyboardInterrupt))
            try:
                end_run(
                    client,
                    run.info.run_id,
                    "KILLED" if killed else "FAILED",
                    f"{type(exc).__name__}: {exc}",
                )
            except StoreError as failed:  # what stopped the run is what gets reported
                log.warning("%s", failed)
        raise
    end_run(client, run.info.run_id, "FINISHED")


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


@interrupt.shielded()
def mark_model_training(client, experiment) -> None:
    """Record `experiment` as a model-training experiment unless a kind is recorded already
    (a user's choice in the UI stands)."""
    if EXPERIMENT_KIND not in (experiment.tags or {}):
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
