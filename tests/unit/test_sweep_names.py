"""How a sweep names its runs: the keys it varies (lists and Hydra's sweep functions), shortened
to their last part unless two would read the same; the params its children share."""

from __future__ import annotations

from types import SimpleNamespace

from vzexp.sweep import shared_params, varying_keys
from vzexp.tasks.base import short_keys


def test_the_varying_keys_are_lists_and_sweep_functions_not_fixed_values():
    overrides = [
        "compressor.merge_space=keys,hidden",
        "tokens=int(interval(6,98))",
        "compressor=choice(visionzip,random)",
        "data.limit=4",
        "+experiment=ablation_merge",
        "model.layout=[1,2]",  # a list value, not a sweep
    ]
    assert varying_keys(overrides) == ["compressor.merge_space", "tokens", "compressor"]


def test_keys_are_shortened_unless_two_would_read_the_same():
    keys = ["compressor.merge_space", "compressor.seed", "seed", "model"]
    assert short_keys(keys) == {
        "compressor.merge_space": "merge_space",
        "compressor.seed": "compressor.seed",
        "seed": "seed",
        "model": "model",
    }


def test_shared_params_are_those_every_child_logged_alike():
    def run(**params):
        return SimpleNamespace(data=SimpleNamespace(params=params))

    children = [run(a="1", b="2", c="x"), run(a="1", b="3"), run(a="1", b="2", c="x")]
    assert shared_params(children) == {"a": "1"}
    assert shared_params([]) == {}
