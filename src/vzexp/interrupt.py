"""SIGTERM (what a scheduler sends first) and SIGINT (Ctrl-C) stop a run cleanly.

Outside a loop the signal raises `Interrupted` at once. Inside a loop (`deferred()`, entered by
the engine around Lightning's predict/fit) it is only recorded, and the loop raises `Interrupted`
at the end of the current batch (`check()`), once that batch's predictions are on disk. A second
signal during a loop raises at once. Inside a write that must not be cut short (`shielded()`, an
MLflow store commit) every signal waits for the write to end: cut short, a SQLite transaction
can keep the store locked for the writes that end the run. The tracked run ends KILLED, the sweep
parent too, and the CLI prints one line and exits with 128 + the signal's number, as a shell
does."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_pending: int | None = None  # a signal received inside a loop, raised at its next batch end
_deferring = 0  # depth of deferred() blocks
_shielding = 0  # depth of shielded() blocks
_urgent = False  # a second signal came during a shielded write: raised when the write ends
_received: int | None = None  # any signal received by this process (the sweep parent reads it)


class Interrupted(BaseException):
    """The run was stopped by a signal. A BaseException, like KeyboardInterrupt, so that no
    `except Exception` on the way up swallows it; the CLI turns it into one line."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def received() -> int | None:
    """The signal that stopped this process, if one did."""
    return _received


def _handler(signum, frame) -> None:
    global _pending, _received, _urgent
    _received = signum
    if _shielding:  # acted on when the write ends
        if _pending is None:
            _pending = signum
        else:
            _urgent = True
        return
    if _deferring and _pending is None:
        _pending = signum  # raised by check() once the current batch is written
        return
    _pending, _urgent = None, False
    raise Interrupted(signum)


def install() -> None:
    """Route SIGTERM and SIGINT through `_handler` (main thread only, as Python requires)."""
    for signum in SIGNALS:
        try:
            signal.signal(signum, _handler)
        except ValueError:  # not the main thread: keep the defaults
            return


@contextmanager
def deferred() -> Iterator[None]:
    """A loop in which a signal waits for the end of the current batch (`check()`)."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1


def check() -> None:
    """At a batch end: raise the signal received during the batch, if any."""
    global _pending, _urgent
    if _pending is not None:
        signum, _pending, _urgent = _pending, None, False
        raise Interrupted(signum)


def pending() -> int | None:
    """The signal waiting for the end of the current batch, if one is."""
    return _pending


@contextmanager
def shielded() -> Iterator[None]:
    """A write that a signal must not cut short: a signal received during it is acted on once
    it ends (raised then, or, inside a loop, at the loop's next batch end unless it is the
    second signal). Also a decorator (`@shielded()`). A write that fails keeps the signal
    waiting for the next `check()` or shielded write."""
    global _shielding
    _shielding += 1
    try:
        yield
    finally:
        _shielding -= 1
    if not _shielding and _pending is not None and (_urgent or not _deferring):
        check()


def note(exc: BaseException) -> None:
    """A KeyboardInterrupt that bypassed the handler (e.g. raised before `install()`) counts as
    SIGINT for whoever asks `received()`."""
    global _received
    if isinstance(exc, KeyboardInterrupt) and _received is None:
        _received = signal.SIGINT
