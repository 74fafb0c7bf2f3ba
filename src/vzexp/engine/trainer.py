"""The one place a Lightning Trainer is built, the logger that sends its metrics to the run's
tracker (vzexp.tracking), so no other module needs Lightning's MLflow logger or its own Trainer,
and how a signal stops Lightning's loops at a batch end (`stoppable`, `StopAtBatchEnd`)."""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import lightning as L
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from vzexp import interrupt

log = logging.getLogger("vzexp")


class TrackerLogger(Logger):
    """Lightning's metrics (the training loss per step) into the tracked run of this job; the
    run itself belongs to vzexp.tracking, which ends it. `prefix` names a stage's metrics
    (`stage2-tune/loss`) so that each stage's steps start at 0 under their own name."""

    def __init__(self, tracker, prefix: str = ""):
        super().__init__()
        self._tracker = tracker
        self._prefix = prefix

    @property
    def name(self) -> str:
        return "vzexp"

    @property
    def version(self) -> str:
        return str(getattr(self._tracker.info, "run_id", "0"))

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The run's params are the resolved config, logged once by vzexp.tracking."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        named = {
            (f"{self._prefix}-{k}" if self._prefix else k): float(v)
            for k, v in metrics.items()
            if k != "epoch"
        }
        self._tracker.log_metrics(named, step=step)


def seed_everything(seed: int) -> None:
    """Python, numpy and torch seeded alike in every process (Lightning's rule)."""
    L.seed_everything(seed, verbose=False)


def make_trainer(trainer, tracker=None, metric_prefix: str = "", **loop: Any) -> L.Trainer:
    """A Lightning Trainer from the `trainer` config group (accelerator, devices, nodes,
    strategy, precision) plus the loop's own arguments (`max_epochs`, callbacks, ...). With a
    tracker that logs (an MLflow run), the loop's logged metrics go into that run. Training
    stops at a batch end on a signal when the fit runs through `stoppable`."""
    logger = TrackerLogger(tracker, metric_prefix) if tracker and tracker.info else False
    loop["callbacks"] = [*loop.get("callbacks", []), StopAtBatchEnd()]
    settings = dict(
        accelerator=trainer.accelerator,
        devices=trainer.devices,
        num_nodes=trainer.num_nodes,
        strategy=trainer.strategy,
        precision=trainer.precision,
        logger=logger,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    if "enable_progress_bar" not in loop and not sys.stderr.isatty():
        # a batch job's log file: Lightning's bar draws nothing there until the end
        settings["enable_progress_bar"] = False
        loop["callbacks"] = [*loop.get("callbacks", []), LogProgress()]
    settings.update(loop)
    return L.Trainer(**settings)


class LogProgress(L.Callback):
    """Progress as one log line every `every` seconds and at the end of each pass (a training
    epoch, a prediction pass), for output that is not a terminal: batches done of all, time per
    batch, time left in the pass, and the metrics the progress bar would show (the loss)."""

    def __init__(self, every: float = 30.0):
        self.every = every
        self._start = self._last = 0.0
        self._total = self._first_step = 0

    def _begin(self, total) -> None:
        self._start = self._last = time.perf_counter()
        self._total = int(total) if total != float("inf") else 0

    def _batch(self, trainer, what: str, done: int) -> None:
        now = time.perf_counter()
        if not trainer.is_global_zero or (now - self._last < self.every and done != self._total):
            return
        self._last = now
        per_batch = (now - self._start) / max(done, 1)
        of = f"/{self._total}" if self._total else ""
        left = ""
        if self._total and done < self._total:
            left = f", {per_batch * (self._total - done):.0f} s left"
        shown = {k: v for k, v in trainer.progress_bar_metrics.items() if k != "v_num"}
        values = "".join(f", {k} {float(v):.4g}" for k, v in shown.items())
        log.info("%s: %d%s batches, %.2f s per batch%s%s", what, done, of, per_batch, left, values)

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.max_steps > 0:  # a loop bounded by steps: one count over all its epochs
            self._begin(trainer.max_steps - trainer.global_step)
            self._first_step = trainer.global_step

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.max_steps <= 0:
            self._begin(trainer.num_training_batches)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.max_steps > 0:
            self._batch(trainer, "training", trainer.global_step - self._first_step)
            return
        epoch = f"training epoch {trainer.current_epoch + 1}"
        if trainer.max_epochs and trainer.max_epochs > 0:
            epoch += f" of {trainer.max_epochs}"
        self._batch(trainer, epoch, batch_idx + 1)

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        self._begin(sum(trainer.num_predict_batches))

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._batch(trainer, "predicting", batch_idx + 1)


class EpochTimer(L.Callback):
    """Wall time of each training epoch (what the feature cache saves)."""

    def __init__(self):
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self._start)
        if trainer.global_rank == 0:  # per epoch: what the trunk cache saves after the first
            epoch, of = trainer.current_epoch + 1, trainer.max_epochs
            log.info("training epoch %d of %d: %.1f s", epoch, of, self.seconds[-1])


class StopAtBatchEnd(L.Callback):
    """Ends a fit run through `stoppable` at the end of the training batch during which SIGTERM
    or SIGINT came (vzexp.interrupt), on every process at the same batch (a DDP rank that did
    not receive it stops with the others). Nothing is saved then: the checkpoints written so far
    (per epoch) are what a rerun resumes from."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        signalled = interrupt.pending()
        if trainer.strategy.reduce_boolean_decision(signalled is not None, all=False):
            interrupt.check()  # this process's signal
            raise interrupt.Interrupted(signal.SIGTERM)  # another process's


def stoppable(loop: Callable[[], Any]) -> Any:
    """`loop()` (a Trainer's fit or predict) with SIGTERM and SIGINT deferred to the end of the
    current batch (`interrupt.deferred`), then raised as `interrupt.Interrupted`, also when
    Lightning's own SIGTERM stop (SIGTERMException, a SystemExit) gets there first."""
    with interrupt.deferred():
        try:
            result = loop()
        except SIGTERMException:
            interrupt.check()
            raise interrupt.Interrupted(signal.SIGTERM) from None
    interrupt.check()  # a signal during the last batch
    return result
