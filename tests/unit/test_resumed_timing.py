"""A resumed run's timing metrics come from the samples it computed itself; with none computed
it reports no timing and says why."""

from __future__ import annotations

from vzexp.engine.evaluate import summarize
from vzexp.tasks.common import own_timing


class Tags:
    def __init__(self):
        self.tags = {}

    def set_tags(self, tags):
        self.tags.update(tags)


def record(i: int, seconds: float) -> dict:
    phases = ("prefill_s", "vision_s", "encoder_s", "compress_s", "llm_prefill_s", "generate_s")
    return {
        "id": str(i),
        "correct": i % 2 == 0,
        "visual_tokens": 8,
        "visual_tokens_llm": 8,
        **{k: seconds for k in phases},
    }


def test_only_the_samples_computed_here_are_timed():
    records = [record(0, 1.0), record(1, 1.0), record(2, 0.002), record(3, 0.004)]
    tracker = Tags()
    metrics = own_timing(summarize(records, "cpu"), records, {"0", "1"}, "cpu", tracker)
    assert tracker.tags == {"vzexp.resumed": "2 of 4"}
    assert abs(metrics["prefill_ms_per_sample"] - 3.0) < 1e-9  # (2 + 4) / 2 ms
    assert metrics["accuracy"] == 0.5 and metrics["samples"] == 4  # over all four


def test_a_run_that_computed_nothing_reports_no_timing():
    records = [record(0, 1.0), record(1, 1.0)]
    tracker = Tags()
    metrics = own_timing(summarize(records, "cpu"), records, {"0", "1"}, "cpu", tracker)
    assert tracker.tags["vzexp.resumed"] == "2 of 2" and "resumed" in tracker.tags["vzexp.timing"]
    assert set(metrics) == {"accuracy", "samples", "visual_tokens", "visual_tokens_llm"}


def test_a_fresh_run_is_left_as_measured():
    records = [record(0, 1.0)]
    tracker = Tags()
    metrics = summarize(records, "cpu")
    assert own_timing(metrics, records, set(), "cpu", tracker) == metrics and not tracker.tags
