"""Timing helpers shared by the on-demand benchmarks: a call's wall and CPU time and how much of
the machine other processes used meanwhile (contention, not the variant's own cost), quartiles."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _system_busy_s() -> float | None:
    try:
        f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        v = [int(x) for x in f]
        # user nice system idle iowait irq softirq steal ...; busy = all but idle and iowait
        return (sum(v[:8]) - v[3] - v[4]) / _TICK
    except (OSError, ValueError, IndexError):
        return None


class CallProbe:
    """Wall time, this process's CPU time, and the share of the machine's cores that other
    processes kept busy during the call (0 = machine otherwise idle, 1 = all cores taken)."""

    def __enter__(self):
        self.sys0 = _system_busy_s()
        self.cpu0 = time.process_time()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.cpu0
        sys1 = _system_busy_s()
        self.foreign = None
        # /proc/stat counts in clock ticks (10 ms): only meaningful for calls well above that
        if self.sys0 is not None and sys1 is not None and self.wall >= 0.2:
            other = max(0.0, (sys1 - self.sys0) - self.cpu)
            self.foreign = other / (self.wall * (os.cpu_count() or 1))
        return False


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def quartiles(xs):
    s = sorted(xs)
    if len(s) == 1:
        return s[0], s[0], s[0]
    q1, q2, q3 = statistics.quantiles(s, n=4, method="inclusive")
    return q1, q2, q3
