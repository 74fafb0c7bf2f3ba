"""VisionZip on hand-checkable tensors (expected values worked out by hand from
shared docs/visionzip.md), plus a comparison against an independent loop-based reference."""

from __future__ import annotations

import pytest
import torch
from captures import make_capture

from vzexp.compress.none import NoCompression
from vzexp.compress.visionzip import Dominant, VisionZip
from vzexp.encoders.capture import LayerCapture
from vzexp.errors import BudgetError, ConfigError


def square_rows(t, cls_row=(100.0, -1.0)):
    """Row 0 = CLS (a distinctive value), row i = [i, i*i] for the patches."""
    return [list(cls_row)] + [[float(i), float(i * i)] for i in range(1, t)]


# --------------------------------------------------------------------------------------------
# The basic case: T = 8 (CLS + 7 patches), D = 3, C = 2.
#
# scores   : idx 0..7 = .01 .10 .20 .05 .30 .15 .90 .12 -> top-2 patches: 6 (.90), then 4 (.30)
# index    : [0, 6, 4]                 (CLS, then topk order)
# dominant : H[0], H[4], H[6]          (ascending sequence order) = [100,-1] [4,16] [6,36]
# remaining: R = [1, 2, 3, 5, 7], M = 5, step = 5 // 2 = 2, positions 0, 2 (4 is cut: first C)
#            -> targets tokens 1 (j=0) and 3 (j=1); non-targets 2, 5, 7
# keys     : K1 = [10, 0], K3 = [0, 1] (targets)
#            K2 = [1, 3]: cos 1/sqrt10 vs 3/sqrt10 -> j=1  (raw dot 10 vs 3 would say j=0,
#                         so this checks the targets' keys are normalised)
#            K5 = [3, 1] -> j=0,  K7 = [2, 1] -> j=0
#            CLS key = [0, 1] points exactly at target 3: would change ctx_1 if CLS were merged.
# ctx_0    = H1 + mean(H5, H7) = [1, 1] + [6, 37] = [7, 38]
# ctx_1    = H3 + mean(H2)     = [3, 9] + [2, 4]  = [5, 13]
# --------------------------------------------------------------------------------------------
BASIC_HIDDEN = square_rows(8)
BASIC_KEYS = [[0, 1], [10, 0], [1, 3], [0, 1], [1, 0], [3, 1], [1, 1], [2, 1]]
BASIC_SCORES = [0.01, 0.10, 0.20, 0.05, 0.30, 0.15, 0.90, 0.12]


def basic_capture():
    return make_capture(BASIC_HIDDEN, BASIC_KEYS, BASIC_SCORES)


def test_basic_case_exact_tokens():
    out = VisionZip(dominant=3, contextual=2).compress(basic_capture())
    expected = torch.tensor([[[100.0, -1.0], [4.0, 16.0], [6.0, 36.0], [7.0, 38.0], [5.0, 13.0]]])
    torch.testing.assert_close(out.tokens, expected)
    assert out.index.tolist() == [[0, 6, 4]]
    assert out.assignment.tolist() == [[1, 0, 0]]
    assert out.num_tokens == 5


def test_basic_case_via_budget_split():
    # tokens=5 -> contextual = max(1, round(5 * 5/32)) = 1, dominant = 4 (CLS + 3 patches).
    # top-3 patches: 6, 4, 2 -> dominant rows 0, 2, 4, 6; R = [1, 3, 5, 7], one target: token 1,
    # all others assigned to it -> ctx = H1 + mean(H3, H5, H7) = [1, 1] + [5, 83/3].
    out = VisionZip(budget=5).compress(basic_capture())
    assert out.index.tolist() == [[0, 6, 4, 2]]
    expected = torch.tensor(
        [[[100.0, -1.0], [2.0, 4.0], [4.0, 16.0], [6.0, 36.0], [6.0, 1.0 + 83.0 / 3.0]]]
    )
    torch.testing.assert_close(out.tokens, expected)
    assert out.assignment.tolist() == [[0, 0, 0]]


def test_contextual_is_target_plus_mean_not_average():
    # With a proper average ctx_0 would be (1 + 5 + 7) / 3 = 13/3 in the first channel; the
    # reference (and our default) gives H1 + mean(H5, H7) = 7.
    out = VisionZip(dominant=3, contextual=2).compress(basic_capture())
    assert out.tokens[0, 3, 0].item() == 7.0
    assert out.tokens[0, 3, 0].item() != pytest.approx(13.0 / 3.0)


# --------------------------------------------------------------------------------------------
# Ties
# --------------------------------------------------------------------------------------------
def test_attention_ties_follow_torch_topk():
    # Patches 1..6 with heavy ties; 3 tied at the top (.5), 3 tied below (.2). D - 1 = 2 of the
    # three tied top patches must be chosen, exactly as torch.topk chooses them.
    scores = torch.tensor(
        [[0.0, 0.5, 0.2, 0.5, 0.2, 0.5, 0.2], [0.3, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]]
    )
    hidden = torch.tensor([square_rows(7), square_rows(7)])
    keys = torch.tensor([[[1.0, float(i)] for i in range(7)]] * 2)
    cap = LayerCapture(
        hidden=hidden, keys=keys, cls_attention=scores, received_attention=None, has_cls=True
    )
    out = VisionZip(dominant=3, contextual=2).compress(cap)
    expected_top = scores[:, 1:].topk(2, dim=1).indices + 1
    assert out.index[:, 0].tolist() == [0, 0]
    assert torch.equal(out.index[:, 1:], expected_top)
    # The chosen patches in image 0 are among the tied top three.
    assert set(out.index[0, 1:].tolist()) <= {1, 3, 5}
    # Dominant rows are the kept set in ascending order.
    for b in range(2):
        kept = sorted(out.index[b].tolist())
        torch.testing.assert_close(out.tokens[b, :3], hidden[b, kept])


def test_similarity_ties_go_to_lowest_target():
    # T = 7, D = 2, C = 2. scores -> top patch 6; index [0, 6]; dominant H0, H6.
    # R = [1, 2, 3, 4, 5], step 2 -> targets 1 (j=0), 3 (j=1); non-targets 2, 4, 5.
    # K1 = [1, 0], K3 = [0, 1]; K2 = [1, 1] and K4 = [5, 5] are exactly equidistant -> j=0;
    # K5 = [0, 2] -> j=1.
    # ctx_0 = H1 + mean(H2, H4) = [1, 1] + [3, 10] = [4, 11]
    # ctx_1 = H3 + mean(H5)     = [3, 9] + [5, 25] = [8, 34]
    keys = [[1, 1], [1, 0], [1, 1], [0, 1], [5, 5], [0, 2], [1, 1]]
    scores = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.9]
    out = VisionZip(dominant=2, contextual=2).compress(make_capture(square_rows(7), keys, scores))
    assert out.index.tolist() == [[0, 6]]
    assert out.assignment.tolist() == [[0, 0, 1]]
    expected = torch.tensor([[[100.0, -1.0], [6.0, 36.0], [4.0, 11.0], [8.0, 34.0]]])
    torch.testing.assert_close(out.tokens, expected)


def test_similarity_ties_identical_target_directions():
    # Both targets point the same way ([1, 0] and [2, 0] normalise to the same vector): every
    # non-target ties and goes to j=0; target j=1 gets nothing and stays its own hidden state.
    # R = [1, 2, 3, 4, 5] (as above), targets 1, 3; non-targets 2, 4, 5 all -> j=0.
    # ctx_0 = H1 + mean(H2, H4, H5) = [1, 1] + [11/3, 15]; ctx_1 = H3 = [3, 9]
    keys = [[1, 1], [1, 0], [3, 0], [2, 0], [0.5, 0], [7, 0], [1, 1]]
    scores = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.9]
    out = VisionZip(dominant=2, contextual=2).compress(make_capture(square_rows(7), keys, scores))
    assert out.assignment.tolist() == [[0, 0, 0]]
    expected = torch.tensor([[[100.0, -1.0], [6.0, 36.0], [1.0 + 11.0 / 3.0, 16.0], [3.0, 9.0]]])
    torch.testing.assert_close(out.tokens, expected)


# --------------------------------------------------------------------------------------------
# Batch > 1: the two images select different patches.
# --------------------------------------------------------------------------------------------
# Image 0: H[i] = [i, i*i], CLS [100, -1]; scores -> top patch 6; R = [1..5]; targets 1, 3.
#   K1 = [1, 0], K3 = [0, 1]; K2 = [2, 1] -> j0; K4 = [1, 2] -> j1; K5 = [1, 3] -> j1
#   ctx_0 = H1 + H2 = [3, 5]; ctx_1 = H3 + mean(H4, H5) = [3, 9] + [4.5, 20.5] = [7.5, 29.5]
# Image 1: H[i] = [-i, 2i], CLS [-100, 1]; scores -> top patch 2; R = [1, 3, 4, 5, 6];
#   targets: positions 0, 2 -> tokens 1 (j0), 4 (j1); non-targets 3, 5, 6
#   K1 = [0, 1], K4 = [1, 0]; K3 = [3, 1] -> j1; K5 = [1, 4] -> j0; K6 = [1, 5] -> j0
#   ctx_0 = H1 + mean(H5, H6) = [-1, 2] + [-5.5, 11] = [-6.5, 13]; ctx_1 = H4 + H3 = [-7, 14]
BATCH_HIDDEN = [square_rows(7), [[-100.0, 1.0]] + [[-float(i), 2.0 * i] for i in range(1, 7)]]
BATCH_KEYS = [
    [[1, 1], [1, 0], [2, 1], [0, 1], [1, 2], [1, 3], [1, 1]],
    [[1, 1], [0, 1], [1, 1], [3, 1], [1, 0], [1, 4], [1, 5]],
]
BATCH_SCORES = [[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.9], [0.0, 0.3, 0.9, 0.1, 0.2, 0.4, 0.5]]
BATCH_EXPECTED = [
    [[100.0, -1.0], [6.0, 36.0], [3.0, 5.0], [7.5, 29.5]],
    [[-100.0, 1.0], [-2.0, 4.0], [-6.5, 13.0], [-7.0, 14.0]],
]


def test_batch_images_select_different_patches():
    cap = make_capture(BATCH_HIDDEN, BATCH_KEYS, BATCH_SCORES)
    out = VisionZip(dominant=2, contextual=2).compress(cap)
    assert out.tokens.shape == (2, 4, 2)
    assert out.index.tolist() == [[0, 6], [0, 2]]
    assert out.assignment.tolist() == [[0, 1, 1], [1, 0, 0]]
    torch.testing.assert_close(out.tokens, torch.tensor(BATCH_EXPECTED))


def test_batch_equals_images_one_by_one():
    cap = make_capture(BATCH_HIDDEN, BATCH_KEYS, BATCH_SCORES)
    together = VisionZip(dominant=2, contextual=2).compress(cap)
    for b in range(2):
        alone = VisionZip(dominant=2, contextual=2).compress(
            make_capture(BATCH_HIDDEN[b], BATCH_KEYS[b], BATCH_SCORES[b])
        )
        torch.testing.assert_close(together.tokens[b : b + 1], alone.tokens)
        assert torch.equal(together.index[b : b + 1], alone.index)


# --------------------------------------------------------------------------------------------
# CLS: always kept (first), never among the merged tokens.
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls_score", [0.0, 10.0])
def test_cls_always_kept_and_never_merged(cls_score):
    # CLS hidden is huge and its key equals target 1's key: merging it anywhere would show.
    # scores: top patch 6 -> index [0, 6]; R = [1..5]; targets 1 (j0), 3 (j1).
    # K2 = K4 = K5 = [0, 1] -> j1; target 1 gets nothing.
    # ctx_0 = H1 = [1, 1]; ctx_1 = H3 + mean(H2, H4, H5) = [3, 9] + [11/3, 15]
    hidden = square_rows(7, cls_row=(1000.0, 1000.0))
    keys = [[1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [0, 1], [1, 1]]
    scores = [cls_score, 0.1, 0.2, 0.3, 0.4, 0.5, 0.9]
    out = VisionZip(dominant=2, contextual=2).compress(make_capture(hidden, keys, scores))
    assert out.index.tolist() == [
        [0, 6]
    ]  # CLS once, first; a high CLS score does not take a patch slot
    expected = torch.tensor([[[1000.0, 1000.0], [6.0, 36.0], [1.0, 1.0], [3.0 + 11.0 / 3.0, 24.0]]])
    torch.testing.assert_close(out.tokens, expected)
    assert out.assignment.shape == (1, 3)  # M - C = (7 - 2) - 2: CLS is not in R


def test_cls_only_dominant():
    # D = 1 keeps only CLS (topk of 0 patches); all 6 patches go to the contextual stage.
    out = VisionZip(dominant=1, contextual=3).compress(basic_capture_t7_zero_assigned())
    assert out.index.tolist() == [[0]]
    assert out.tokens[0, 0].tolist() == [100.0, -1.0]


# --------------------------------------------------------------------------------------------
# A target with zero assigned tokens (count clamps at 1: no NaN, just H[target]).
# --------------------------------------------------------------------------------------------
# T = 7, D = 1 (CLS only), C = 3: R = [1..6], M = 6, step 2 -> targets 1 (j0), 3 (j1), 5 (j2).
# K1 = [1, 0], K3 = [0, 1], K5 = [-1, 0]; K2 = [1, .1] -> j0; K4 = [1, -.2] -> j0;
# K6 = [-1, .5] -> cos with j2 = 1/1.118 beats j1 = .5/1.118 -> j2. Nothing goes to j1.
# ctx_0 = H1 + mean(H2, H4) = [1, 1] + [3, 10] = [4, 11]; ctx_1 = H3 = [3, 9];
# ctx_2 = H5 + H6 = [5, 25] + [6, 36] = [11, 61]
def basic_capture_t7_zero_assigned():
    keys = [[1, 1], [1, 0], [1, 0.1], [0, 1], [1, -0.2], [-1, 0], [-1, 0.5]]
    scores = [0.5, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    return make_capture(square_rows(7), keys, scores)


def test_target_with_zero_assigned_tokens():
    out = VisionZip(dominant=1, contextual=3).compress(basic_capture_t7_zero_assigned())
    assert out.assignment.tolist() == [[0, 0, 2]]
    expected = torch.tensor([[[100.0, -1.0], [4.0, 11.0], [3.0, 9.0], [11.0, 61.0]]])
    torch.testing.assert_close(out.tokens, expected)
    assert torch.isfinite(out.tokens).all()


def test_contextual_equals_remaining_every_token_a_target():
    # C = M: step 1, every remaining token is a target, nothing to merge: ctx = H_R.
    out = VisionZip(dominant=3, contextual=5).compress(basic_capture())
    # kept 0, 4, 6; R = [1, 2, 3, 5, 7]
    rows = [0, 4, 6, 1, 2, 3, 5, 7]
    expected = torch.tensor([BASIC_HIDDEN[i] for i in rows])[None]
    torch.testing.assert_close(out.tokens, expected)
    assert out.assignment.shape == (1, 0)


# --------------------------------------------------------------------------------------------
# contextual = 0 and the Dominant class
# --------------------------------------------------------------------------------------------
DOMINANT_ONLY = torch.tensor([[[100.0, -1.0], [4.0, 16.0], [6.0, 36.0]]])


def test_contextual_zero_gives_dominant_only():
    for compressor in (VisionZip(dominant=3, contextual=0), VisionZip(dominant=3)):
        out = compressor.compress(basic_capture())
        torch.testing.assert_close(out.tokens, DOMINANT_ONLY)
        assert out.index.tolist() == [[0, 6, 4]]
        assert out.assignment is None


def test_dominant_class():
    for compressor in (Dominant(budget=3), Dominant(dominant=3)):
        assert compressor.name == "dominant"
        assert compressor.output_tokens(7, True) == 3
        out = compressor.compress(basic_capture())
        torch.testing.assert_close(out.tokens, DOMINANT_ONLY)
        assert out.index.tolist() == [[0, 6, 4]]
        assert out.assignment is None


def test_dominant_class_whole_sequence_and_errors():
    out = Dominant(budget=8).compress(basic_capture())  # budget == seq_len keeps everything
    torch.testing.assert_close(out.tokens, torch.tensor([BASIC_HIDDEN]))
    for bad in (0, 9, None):
        with pytest.raises(BudgetError) as err:
            Dominant(budget=bad).compress(basic_capture())
        assert err.value.key == "tokens"
        assert f"tokens={bad!r}" in str(err.value)
        assert "1..8" in str(err.value)


def test_dominant_without_cls_uses_received_attention():
    # SigLIP-like: no CLS, received attention ranks tokens, D tokens kept (no CLS slot).
    # received: idx 0..5 = .3 .1 .6 .2 .5 .0 -> top-3 in topk order: 2, 4, 0 -> rows 0, 2, 4.
    hidden = [[float(i), float(i * i)] for i in range(6)]
    keys = [[1, 0]] * 6
    scores = [0.3, 0.1, 0.6, 0.2, 0.5, 0.0]
    out = Dominant(budget=3).compress(make_capture(hidden, keys, scores, has_cls=False))
    assert out.index.tolist() == [[2, 4, 0]]
    torch.testing.assert_close(out.tokens, torch.tensor([[[0.0, 0.0], [2.0, 4.0], [4.0, 16.0]]]))


def test_visionzip_without_cls():
    # received: .3 .1 .6 .2 .5 .0 (T = 6), D = 2, C = 2: top-2 -> [2, 4]; R = [0, 1, 3, 5],
    # step 2 -> targets 0 (j0), 3 (j1); K1 = [1, 1] vs K0 = [1, 0], K3 = [0, 1]: tie -> j0;
    # K5 = [0, 3] -> j1.  ctx_0 = H0 + H1 = [1, 1]; ctx_1 = H3 + H5 = [8, 34]
    hidden = [[float(i), float(i * i)] for i in range(6)]
    keys = [[1, 0], [1, 1], [9, 9], [0, 1], [9, 9], [0, 3]]
    scores = [0.3, 0.1, 0.6, 0.2, 0.5, 0.0]
    out = VisionZip(dominant=2, contextual=2).compress(
        make_capture(hidden, keys, scores, has_cls=False)
    )
    assert out.index.tolist() == [[2, 4]]
    expected = torch.tensor([[[2.0, 4.0], [4.0, 16.0], [1.0, 1.0], [8.0, 34.0]]])
    torch.testing.assert_close(out.tokens, expected)


# --------------------------------------------------------------------------------------------
# NoCompression
# --------------------------------------------------------------------------------------------
def test_no_compression_default_drops_cls_full_keeps_it():
    cap = basic_capture()
    default = NoCompression().compress(cap)
    torch.testing.assert_close(default.tokens, torch.tensor([BASIC_HIDDEN[1:]]))
    assert default.index is None and default.assignment is None
    full = NoCompression(select="full").compress(cap)
    torch.testing.assert_close(full.tokens, torch.tensor([BASIC_HIDDEN]))
    assert NoCompression().output_tokens(7, True) == 7
    assert NoCompression(select="full").output_tokens(7, True) == 8
    # Without CLS there is nothing to drop.
    no_cls = make_capture(BASIC_HIDDEN, BASIC_KEYS, BASIC_SCORES, has_cls=False)
    torch.testing.assert_close(
        NoCompression().compress(no_cls).tokens, torch.tensor([BASIC_HIDDEN])
    )
    assert NoCompression().output_tokens(8, False) == 8


def test_no_compression_rejects_unknown_select():
    with pytest.raises(ConfigError) as err:
        NoCompression(select="cls_patch")
    assert err.value.key == "compressor.select"
    assert "compressor.select='cls_patch'" in str(err.value)


# --------------------------------------------------------------------------------------------
# Output shapes
# --------------------------------------------------------------------------------------------
def random_capture(batch, num_patches, dim, key_dim, has_cls, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    t = num_patches + int(has_cls)
    hidden = torch.randn(batch, t, dim, generator=gen, dtype=dtype)
    keys = torch.randn(batch, t, key_dim, generator=gen, dtype=dtype)
    # Like a CLS row summed over 4 heads: positive, distinct.
    scores = torch.randn(batch, 4, t, generator=gen, dtype=dtype).softmax(-1).sum(1)
    return LayerCapture(
        hidden=hidden,
        keys=keys,
        cls_attention=scores if has_cls else None,
        received_attention=None if has_cls else scores,
        has_cls=has_cls,
    )


@pytest.mark.parametrize(
    "budget, num_patches, has_cls, split",
    [
        (64, 576, True, (54, 10)),
        (128, 576, True, (108, 20)),
        (192, 576, True, (162, 30)),
        (64, 729, False, (54, 10)),
        (10, 16, True, (8, 2)),
    ],
)
def test_output_shapes(budget, num_patches, has_cls, split):
    vz = VisionZip(budget=budget)
    assert vz.split(num_patches, has_cls) == split
    assert vz.output_tokens(num_patches, has_cls) == budget
    cap = random_capture(2, num_patches, 8, 4, has_cls)
    out = vz.compress(cap)
    d, c = split
    assert out.tokens.shape == (2, d + c, 8)
    assert out.index.shape == (2, d)
    assert out.assignment.shape == (2, num_patches + int(has_cls) - d - c)
    if has_cls:
        assert (out.index[:, 0] == 0).all() and (out.index[:, 1:] > 0).all()
        torch.testing.assert_close(out.tokens[:, 0], cap.hidden[:, 0])  # CLS first
    # Kept indices are distinct.
    assert all(len(set(row)) == d for row in out.index.tolist())


# --------------------------------------------------------------------------------------------
# Vectorised implementation == independent loop reference (spec text, followed literally)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "num_patches, dominant, contextual, batch, has_cls",
    [
        (16, 5, 3, 1, True),
        (16, 1, 4, 2, True),
        (49, 10, 5, 3, True),
        (36, 30, 7, 2, True),  # C == M: every remaining token a target
        (36, 30, 6, 1, True),  # step 1, first C positions
        (576, 54, 10, 2, True),
        (576, 108, 20, 1, True),
        (576, 162, 30, 1, True),
        (576, 64, 0, 1, True),
        (16, 5, 3, 2, False),
        (729, 54, 10, 1, False),
    ],
)
def test_matches_loop_reference(
    visionzip_reference, num_patches, dominant, contextual, batch, has_cls
):
    cap = random_capture(
        batch, num_patches, 6, 8, has_cls, seed=num_patches + dominant, dtype=torch.float64
    )
    out = VisionZip(dominant=dominant, contextual=contextual).compress(cap)
    scores = cap.cls_attention if has_cls else cap.received_attention
    ref_index, ref_tokens, ref_assignment = visionzip_reference(
        cap.hidden, cap.keys, scores, has_cls, dominant, contextual
    )
    assert torch.equal(out.index, ref_index)
    assert out.tokens.shape == (batch, dominant + contextual, 6)
    torch.testing.assert_close(out.tokens, ref_tokens, rtol=1e-10, atol=1e-10)
    if contextual == 0:
        assert out.assignment is None
    else:
        assert out.assignment.tolist() == ref_assignment


def test_matches_loop_reference_float32(visionzip_reference):
    cap = random_capture(2, 576, 16, 16, True, seed=7)
    out = VisionZip(budget=64).compress(cap)
    ref_index, ref_tokens, ref_assignment = visionzip_reference(
        cap.hidden, cap.keys, cap.cls_attention, True, 54, 10
    )
    assert torch.equal(out.index, ref_index)
    assert out.assignment.tolist() == ref_assignment
    torch.testing.assert_close(out.tokens, ref_tokens, rtol=1e-5, atol=1e-5)
