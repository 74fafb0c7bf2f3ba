"""VisionZip's ablation parameters on hand-checkable tensors (the basic case of test_visionzip:
T = 8, CLS + 7 patches; hidden row i = [i, i*i], CLS = [100, -1])."""

from __future__ import annotations

import pytest
import torch
from captures import make_capture

from vzexp.compress.draws import SeededDraws
from vzexp.compress.visionzip import VisionZip, pick_targets
from vzexp.config import check_compressor
from vzexp.errors import ConfigError

HIDDEN = [[100.0, -1.0]] + [[float(i), float(i * i)] for i in range(1, 8)]
KEYS = [[0, 1], [10, 0], [1, 3], [0, 1], [1, 0], [3, 1], [1, 1], [2, 1]]
SCORES = [0.01, 0.10, 0.20, 0.05, 0.30, 0.15, 0.90, 0.12]


def H(i):
    return torch.tensor(HIDDEN[i])


def run(**params):
    out = VisionZip(**params).compress(make_capture(HIDDEN, KEYS, SCORES))
    return out.tokens[0], out


def test_merge_mean_averages_target_with_its_tokens():
    # Same assignment as the reference case (targets 1, 3; 5 and 7 -> 1, 2 -> 3), but
    # ctx_0 = mean(H1, H5, H7) and ctx_1 = mean(H3, H2) instead of target + mean.
    tokens, _ = run(dominant=3, contextual=2, merge="mean")
    torch.testing.assert_close(tokens[3], torch.tensor([13 / 3, 25.0]))
    torch.testing.assert_close(tokens[4], torch.tensor([2.5, 6.5]))


def test_merge_space_hidden_assigns_by_hidden_similarity():
    # Targets 1 ([1,1], 45 deg) and 3 ([3,9], 71.6 deg). By hidden direction, 2 (63.4 deg),
    # 5 (78.7) and 7 (81.9) all go to target 3; by keys, 5 and 7 went to target 1.
    tokens, out = run(dominant=3, contextual=2, merge_space="hidden")
    assert out.assignment.tolist() == [[1, 1, 1]]
    torch.testing.assert_close(tokens[3], H(1))  # no token assigned: the target alone
    torch.testing.assert_close(tokens[4], H(3) + (H(2) + H(5) + H(7)) / 3)


def test_drop_cls_keeps_top_patches_and_never_merges_cls():
    # Dominant: top-3 patches 6 (.90), 4 (.30), 2 (.20) -> H2, H4, H6 in sequence order.
    # Rest without CLS: [1, 3, 5, 7], step 2 -> targets 1 and 5; 3 -> 5 (cos 0 vs .32),
    # 7 -> 5 (cos .894 vs .990). ctx_0 = H1, ctx_1 = H5 + mean(H3, H7).
    tokens, out = run(dominant=3, contextual=2, keep_cls=False)
    assert out.index.tolist() == [[6, 4, 2]]
    expected = torch.stack([H(2), H(4), H(6), H(1), H(5) + (H(3) + H(7)) / 2])
    torch.testing.assert_close(tokens, expected)


def test_drop_cls_budget_counts_patches_only():
    vz = VisionZip(budget=24, keep_cls=False)
    assert vz.split(196, True) == (20, 4)
    assert vz.output_tokens(196, True) == 24


def test_contextual_only_merges_every_token_cls_included():
    # R = all 8 tokens, step 8 // 2 = 4 -> targets 0 (CLS, key [0,1]) and 4 (key [1,0]).
    # 1 [10,0] -> 4; 2 [1,3] -> 0; 3 [0,1] -> 0; 5 [3,1] -> 4; 6 [1,1] tie -> 0 (lowest); 7 [2,1] -> 4
    tokens, out = run(dominant=0, contextual=2)
    assert out.index.shape == (1, 0)
    assert out.assignment.tolist() == [[1, 0, 0, 1, 0, 1]]
    torch.testing.assert_close(tokens[0], H(0) + (H(2) + H(3) + H(6)) / 3)
    torch.testing.assert_close(tokens[1], H(4) + (H(1) + H(5) + H(7)) / 3)


def test_contextual_only_from_the_registry_config():
    vz = VisionZip(budget=24, dominant=0, contextual=24)
    assert vz.split(196, True) == (0, 24)


def test_split_at_fixed_total():
    # The dominant/contextual ablation at a fixed total of 5.
    for dominant in range(0, 6):
        tokens, _ = run(budget=5, dominant=dominant)
        assert tokens.shape == (5, 2)


def unit_rows(rows):
    x = torch.tensor(rows, dtype=torch.float32)[None]
    return x / x.norm(dim=-1, keepdim=True)


def test_similarity_targets_are_a_farthest_point_cover_from_the_densest():
    # Three copies of (1,0), then (0,1), then (-1,0). Densest: token 0 (mean cos .4, first of
    # the ties); farthest from it: 4 (cos -1); then the one least covered: 3 (cos 0).
    features = unit_rows([[1, 0], [1, 0], [1, 0], [0, 1], [-1, 0]])
    assert pick_targets(features, 3, "similarity", None).tolist() == [[0, 3, 4]]
    assert pick_targets(features, 1, "similarity", None).tolist() == [[0]]


def test_uniform_targets_are_the_reference_stride():
    features = unit_rows([[1, 0]] * 9)
    assert pick_targets(features, 3, "uniform", None).tolist() == [[0, 3, 6]]
    assert pick_targets(features, 2, "uniform", None).tolist() == [[0, 4]]


def test_random_targets_distinct_sorted_reproducible_and_covering():
    features = unit_rows([[1, 0]] * 10).expand(200, -1, -1)
    first = pick_targets(features, 3, "random", SeededDraws(5).uniform)
    again = pick_targets(features, 3, "random", SeededDraws(5).uniform)
    other = pick_targets(features, 3, "random", SeededDraws(6).uniform)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert (first.diff(dim=1) > 0).all()  # distinct and ascending
    assert set(first.flatten().tolist()) == set(range(10))


def test_random_target_pick_end_to_end_is_seeded():
    capture = make_capture(HIDDEN, KEYS, SCORES)
    a = VisionZip(dominant=3, contextual=2, target_pick="random", seed=1).compress(capture)
    b = VisionZip(dominant=3, contextual=2, target_pick="random", seed=1).compress(capture)
    torch.testing.assert_close(a.tokens, b.tokens)


@pytest.mark.parametrize(
    "key, value, allowed",
    [
        ("merge_space", "values", "one of keys, hidden"),
        ("target_pick", "kmeans", "one of uniform, random, similarity"),
        ("merge", "max", "one of add, mean"),
    ],
)
def test_schema_rejects_unknown_ablation_values(key, value, allowed):
    node = {"_target_": "vzexp.compress.visionzip.VisionZip", "name": "visionzip", key: value}
    with pytest.raises(ConfigError) as err:
        check_compressor(node)
    assert f"compressor.{key}='{value}'" in str(err.value) and allowed in str(err.value)


def test_groups_map_every_position_to_kept_or_its_contextual_token():
    # The basic case: kept 0, 4, 6; targets 1 (j=0) and 3 (j=1); 2 -> 1, 5 -> 0, 7 -> 0.
    _, out = run(dominant=3, contextual=2)
    assert out.groups.tolist() == [[-1, 0, 1, 1, -1, 0, -1, 0]]
    # CLS dropped: neither kept nor merged (-2); rest [1, 3, 5, 7]: targets 1 and 5, 3 -> 5, 7 -> 5
    _, out = run(dominant=3, contextual=2, keep_cls=False)
    assert out.groups.tolist() == [[-2, 0, -1, 1, -1, 1, -1, 1]]
