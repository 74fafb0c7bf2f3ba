"""The predictions store: per-rank parts, truncated lines, merge order."""

from __future__ import annotations

import pytest

from vzexp.engine.predictions import PredictionStore, config_key, read_records


def test_parts_merge_in_dataset_order_and_disappear(tmp_path):
    store = PredictionStore(tmp_path / "p.jsonl")
    store.append(1, [{"id": "b", "x": 1}, {"id": "d", "x": 3}])
    store.append(0, [{"id": "a", "x": 0}, {"id": "c", "x": 2}])
    assert set(store.done()) == {"a", "b", "c", "d"}
    records = store.merge(["a", "b", "c", "d"])
    assert [r["x"] for r in records] == [0, 1, 2, 3]
    assert store.parts() == []
    assert [r["id"] for r in read_records(store.path)] == ["a", "b", "c", "d"]


def test_a_line_cut_by_a_kill_is_ignored_and_duplicates_count_once(tmp_path):
    store = PredictionStore(tmp_path / "p.jsonl")
    store.append(0, [{"id": "a", "x": 0}, {"id": "b", "x": 1}])
    with store.part(0).open("a") as f:
        f.write('{"id": "c", "x"')  # the process died mid-line
    store.append(1, [{"id": "a", "x": 99}])  # padding or a rerun: the first record wins
    assert store.done() == {"a": {"id": "a", "x": 0}, "b": {"id": "b", "x": 1}}


def test_merge_refuses_missing_samples(tmp_path):
    store = PredictionStore(tmp_path / "p.jsonl")
    store.append(0, [{"id": "a"}])
    with pytest.raises(RuntimeError, match="1 samples have no prediction"):
        store.merge(["a", "b"])


def test_config_key_is_stable_and_order_free():
    assert config_key({"a": 1, "b": [1, 2]}) == config_key({"b": [1, 2], "a": 1})
    assert config_key({"a": 1}) != config_key({"a": 2})
    assert len(config_key({"a": 1})) == 10  # short enough for a file name


def test_a_smaller_limit_later_keeps_what_was_done(tmp_path):
    store = PredictionStore(tmp_path / "p.jsonl")
    store.append(0, [{"id": k} for k in "abcd"])
    assert [r["id"] for r in store.merge(list("abcd"))] == list("abcd")
    # the same config with data.limit=2: its records are the first two, the file keeps all four
    assert [r["id"] for r in store.merge(["a", "b"])] == ["a", "b"]
    assert [r["id"] for r in read_records(store.path)] == list("abcd")
