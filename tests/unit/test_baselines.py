"""The encoder-side baselines on hand-checkable tensors: pool, downsample, ToMe, PruMerge(+),
DivPrune, VisPruner. Expected values are worked out in the comments."""

from __future__ import annotations

import pytest
import torch
from captures import make_capture
from transformers import CLIPVisionConfig, CLIPVisionModel

from vzexp.compress.divprune import DivPrune
from vzexp.compress.downsample import Downsample
from vzexp.compress.pool import SpatialPool
from vzexp.compress.prumerge import PruMerge, iqr_outliers, single_head_cls_attention
from vzexp.compress.tome import ToMe
from vzexp.compress.vispruner import VisPruner
from vzexp.encoders.capture import LayerCapture
from vzexp.errors import BudgetError, ConfigError


def grid_capture(side=4, has_cls=True):
    """Patch p (raster order) has hidden [p, 10p]; CLS = [-1, -1]."""
    patches = [[float(p), 10.0 * p] for p in range(side * side)]
    hidden = ([[-1.0, -1.0]] if has_cls else []) + patches
    t = len(hidden)
    return make_capture(hidden, [[1.0, 0.0]] * t, [1.0 / t] * t, has_cls)


# ------------------------------------------------------------------------------------- pool
def test_pool_2x2_blocks_of_a_4x4_grid():
    # budget 4 -> 2x2: block (0,0) = patches 0, 1, 4, 5 -> mean 2.5; (0,1) = 2, 3, 6, 7 -> 4.5 ...
    out = SpatialPool(budget=4).compress(grid_capture())
    assert out.tokens[0, :, 0].tolist() == [2.5, 4.5, 10.5, 12.5]
    torch.testing.assert_close(out.tokens[0, :, 1], 10 * out.tokens[0, :, 0])


def test_pool_non_square_budget_and_keep_cls():
    # budget 8 -> 2 rows x 4 cols: each cell = 2 rows x 1 col, e.g. patches 0 and 4 -> 2.
    out = SpatialPool(budget=8).compress(grid_capture())
    assert out.tokens[0, :, 0].tolist() == [2.0, 3.0, 4.0, 5.0, 10.0, 11.0, 12.0, 13.0]
    with_cls = SpatialPool(budget=5, keep_cls=True).compress(grid_capture())
    assert with_cls.tokens[0, :, 0].tolist() == [-1.0, 2.5, 4.5, 10.5, 12.5]
    assert SpatialPool(budget=5, keep_cls=True).output_tokens(16, True) == 5


def test_pool_budget_errors():
    with pytest.raises(BudgetError, match="tokens=17"):
        SpatialPool(budget=17).output_tokens(16, True)
    with pytest.raises(BudgetError, match="tokens=None"):
        SpatialPool(budget=None).output_tokens(16, True)


# ------------------------------------------------------------------------------- downsample
@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    return CLIPVisionModel._from_config(config, attn_implementation="sdpa").eval()


def test_downsample_runs_the_tower_on_the_smaller_image(tiny_clip):
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ds = Downsample(budget=8)  # 4x4 grid -> 2 rows x 4 cols -> a 16 x 32 px image
    out = ds.compress(ds.capture(tiny_clip, pixels, feature_layer=-2))
    assert out.tokens.shape == (2, 8, 32)
    small = torch.nn.functional.interpolate(
        pixels, size=(16, 32), mode="bilinear", antialias=True, align_corners=False
    )
    with torch.no_grad():
        direct = tiny_clip(
            pixel_values=small, interpolate_pos_encoding=True, output_hidden_states=True
        )
    torch.testing.assert_close(out.tokens, direct.hidden_states[-2][:, 1:])


def test_downsample_keep_cls_counts_cls_in_the_budget(tiny_clip):
    flat = torch.full((1, 3, 32, 32), 0.3)
    ds = Downsample(
        budget=4, keep_cls=True
    )  # 3 patches left for the grid -> 1 x 2 (cols <= 2 rows)
    assert ds.grid(16, True) == (1, 2)
    out = ds.compress(ds.capture(tiny_clip, flat))
    assert out.tokens.shape == (1, 3, 32)  # CLS + 1 x 2 patches


# ------------------------------------------------------------------------------------- ToMe
def test_tome_one_round_merges_each_a_into_its_most_similar_b():
    # No CLS; A = {0, 2}, B = {1, 3}. Keys: 0 ~ 1, 2 ~ 3 -> 0 into 1, 2 into 3 (r = 2).
    hidden = [[0.0, 0.0], [2.0, 4.0], [10.0, 0.0], [20.0, 2.0]]
    keys = [[1, 0], [1, 0.1], [0, 1], [0.1, 1]]
    cap = make_capture(hidden, keys, [0.25] * 4, has_cls=False)
    out = ToMe(budget=2).compress(cap)
    torch.testing.assert_close(out.tokens[0], torch.tensor([[1.0, 2.0], [15.0, 1.0]]))


def test_tome_second_round_is_size_weighted():
    # Round 1 (r = 2): {0,1} (size 2) and {2,3} (size 2); round 2 (r = 1): all four, the mean.
    hidden = [[0.0, 0.0], [2.0, 4.0], [10.0, 0.0], [20.0, 2.0]]
    keys = [[1, 0], [1, 0.1], [0, 1], [0.1, 1]]
    out = ToMe(budget=1).compress(make_capture(hidden, keys, [0.25] * 4, has_cls=False))
    torch.testing.assert_close(out.tokens[0], torch.tensor([[8.0, 1.5]]))
    # Sizes matter: 3 tokens -> 2 -> 1 gives (x0 + x1)/2 merged with x2 by sizes 2 and 1.
    three = make_capture([[0.0], [3.0], [9.0]], [[1, 0], [1, 0], [0.9, 0.1]], [0.3] * 3, False)
    assert ToMe(budget=1).compress(three).tokens[0].tolist() == [[4.0]]


def test_tome_never_merges_cls():
    # CLS key equals patch 1's key: CLS must still come out unchanged and first.
    hidden = [[100.0], [1.0], [2.0], [3.0], [4.0]]
    keys = [[1, 0], [1, 0], [0, 1], [0, 1], [1, 0]]
    out = ToMe(budget=3).compress(make_capture(hidden, keys, [0.2] * 5, has_cls=True))
    assert out.tokens[0, 0].item() == 100.0
    assert out.tokens.shape == (1, 3, 1)
    with pytest.raises(BudgetError, match="2..5"):
        ToMe(budget=1).output_tokens(4, True)


# ---------------------------------------------------------------------------------- PruMerge
def prumerge_capture(query, key_states, hidden):
    key_states = torch.tensor(key_states, dtype=torch.float32)[None]
    hidden = torch.tensor(hidden, dtype=torch.float32)[None]
    t = hidden.shape[1]
    return LayerCapture(
        hidden=hidden,
        keys=key_states,
        cls_attention=torch.full((1, t), 1.0 / t),
        received_attention=None,
        has_cls=True,
        cls_query=torch.tensor([query], dtype=torch.float32),
        key_states=key_states,
    )


def test_single_head_attention_over_the_full_width():
    q, k = torch.tensor([[1.0, 0.0]]), torch.tensor([[[0.0, 0.0], [4.0, 0.0], [2.0, 0.0]]])
    expected = torch.softmax(torch.tensor([0.0, 4.0, 2.0]) / 2**0.5, dim=0)
    torch.testing.assert_close(single_head_cls_attention(q, k)[0], expected)


def test_prumerge_centres_add_attention_weighted_neighbours_and_one_extra_token():
    # Patches p1..p4 (sequence 1..4); keys p1 [4,0], p2 [2,0], p3 [0,2], p4 [0,1]; query [1,0].
    # Attention a = softmax([0, 4, 2, 0, 0] / sqrt 2) over CLS + patches; centres (budget 3 -> 2):
    # p1, p2. One neighbour each (cosine of keys): p1 -> p2, p2 -> p1.
    keys = [[0, 0], [4, 0], [2, 0], [0, 2], [0, 1]]
    hidden = [[9.0, 9.0], [1.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 5.0]]
    cap = prumerge_capture([1.0, 0.0], keys, hidden)
    a = torch.softmax(torch.tensor([0.0, 4.0, 2.0, 0.0, 0.0]) / 2**0.5, dim=0)
    x = torch.tensor(hidden)
    out = PruMerge(budget=3, neighbours=1).compress(cap)
    assert out.index.tolist() == [[1, 2]]
    expected = torch.stack([x[1] + a[2] * x[2], x[2] + a[1] * x[1], a[3] * x[3] + a[4] * x[4]])
    torch.testing.assert_close(out.tokens[0], expected)


def test_prumerge_plus_outliers_then_evenly_spread_patches():
    # 16 patches, one key aligned with the query: the only IQR outlier (patch index 9).
    keys = [[0.0, 0.0]] + [[0.0, 1.0]] * 16
    keys[1 + 9] = [6.0, 0.0]
    hidden = [[float(i), 0.0] for i in range(17)]
    cap = prumerge_capture([1.0, 0.0], keys, hidden)
    attention = single_head_cls_attention(cap.cls_query, cap.key_states)[0, 1:]
    assert iqr_outliers(attention).tolist() == [9]
    out = PruMerge(budget=5, plus=True).compress(cap)
    # 4 centres: the outlier, then 3 of the other 15 patches evenly spread: places 0, 7, 14 of
    # [0..8, 10..15] -> patches 0, 7, 15 (sequence positions + 1).
    assert out.index.tolist() == [[10, 1, 8, 16]]
    assert out.tokens.shape == (1, 5, 2)


def test_prumerge_needs_cls_and_a_budget_of_two():
    with pytest.raises(ConfigError, match="CLS"):
        PruMerge(budget=8).output_tokens(16, False)
    with pytest.raises(BudgetError, match="tokens=1"):
        PruMerge(budget=1).output_tokens(16, True)


# ---------------------------------------------------------------------------------- DivPrune
def test_divprune_greedy_max_min():
    # Patches (after CLS): 0 = (1,0), 1 = (1,.01), 2 = (0,1), 3 = (-1,0).
    # Nearest other: 0, 1 ~ 0; 2: 0.99 (to 1); 3: 1.0 (to 2) -> first pick 3.
    # Distance to {3}: 2, 1.99995, 1, 0 -> pick 0. Then min-distance: 0, 5e-5, 1, 0 -> pick 2.
    hidden = [[5.0, 5.0], [1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [-1.0, 0.0]]
    cap = make_capture(hidden, [[1.0, 0.0]] * 5, [0.2] * 5)
    two = DivPrune(budget=2, space="vision").compress(cap)
    assert two.index.tolist() == [[4, 1]]  # selection order, sequence positions
    torch.testing.assert_close(two.tokens[0], torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    three = DivPrune(budget=3, space="vision").compress(cap)
    assert three.index.tolist() == [[4, 1, 3]]
    assert three.tokens[0, :, 0].tolist() == [1.0, 0.0, -1.0]  # raster order


def test_divprune_projected_space_uses_the_projector():
    hidden = [[5.0, 5.0], [1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [-1.0, 0.0]]
    cap = make_capture(hidden, [[1.0, 0.0]] * 5, [0.2] * 5)
    with pytest.raises(ConfigError, match="compressor.space='projected'"):
        DivPrune(budget=2).compress(cap)
    seen = []

    def project(x):  # a projector that swaps the axes of patch 0/1's direction: (x, y) -> (y, x+y)
        seen.append(x.shape)
        return torch.stack([x[..., 1], x[..., 0] + x[..., 1]], dim=-1)

    cap.project = project
    out = DivPrune(budget=2).compress(cap)
    # Projected: 0 -> (0, 1), 1 -> (.01, 1.01), 2 -> (1, 1), 3 -> (0, -1). Nearest other:
    # 0: ~0 (to 1); 2: 1 - cos((1,1),(0,1)) = .29; 3: 2 - ... = 1.71 (to 2) -> first pick 3,
    # then the farthest from 3: patch 0 (distance 2).
    assert seen == [(1, 4, 2)]
    assert out.index.tolist() == [[4, 1]]


def test_divprune_never_repeats_a_token_among_duplicates():
    hidden = [[0.0, 0.0]] + [[1.0, 1.0]] * 6
    cap = make_capture(hidden, [[1.0, 0.0]] * 7, [1 / 7] * 7)
    out = DivPrune(budget=4, space="vision").compress(cap)
    assert len(set(out.index[0].tolist())) == 4


# --------------------------------------------------------------------------------- VisPruner
def test_vispruner_important_then_diverse():
    # 8 patches, CLS attention rising with the index: important (budget 4, ratio .5) = p7, p6.
    # Residual, descending: [p5, p4, p3, p2, p1, p0], keep 2.
    # Round 1: r = 4, A = [p5, p3, p1] (all dropped: r >= |A|), residual = B = [p4, p2, p0].
    # Round 2: r = 1, A = [p4, p0], B = [p2]; cos(p4, p2) = .6, cos(p0, p2) = .8 -> drop p0.
    feats = {4: [1.0, 0.0], 2: [0.6, 0.8], 0: [0.0, 1.0]}
    hidden = [[9.0, 9.0]] + [feats.get(p, [0.5, 0.5]) for p in range(8)]
    scores = [0.0] + [0.01 * (p + 1) for p in range(8)]
    out = VisPruner(budget=4).compress(make_capture(hidden, [[1.0, 0.0]] * 9, scores))
    assert sorted(out.index[0].tolist()) == [3, 5, 7, 8]  # p2, p4, p6, p7 (+1 for CLS)
    expected = torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.5, 0.5], [0.5, 0.5]])
    torch.testing.assert_close(out.tokens[0], expected)


def test_vispruner_all_important_and_all_diverse():
    cap = grid_capture()
    cap.cls_attention = torch.arange(17.0)[None]
    top = VisPruner(budget=3, important_ratio=1.0).compress(cap)
    assert top.tokens[0, :, 0].tolist() == [13.0, 14.0, 15.0]
    assert VisPruner(budget=3, important_ratio=0.0).compress(cap).tokens.shape == (1, 3, 2)
    with pytest.raises(ConfigError, match="important_ratio"):
        VisPruner(budget=3, important_ratio=1.5)
