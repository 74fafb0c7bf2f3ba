"""Random selection: CLS kept, distinct patches, ascending order, reproducible per seed."""

from __future__ import annotations

import pytest
import torch

from vzexp.compress.random_select import RandomSelect
from vzexp.encoders.capture import LayerCapture
from vzexp.errors import BudgetError


def capture(batch=3, patches=16, has_cls=True):
    t = patches + int(has_cls)
    # hidden row i holds the value i, so the kept rows tell which positions were kept
    hidden = torch.arange(t, dtype=torch.float32).view(1, t, 1).expand(batch, t, 2).clone()
    return LayerCapture(
        hidden=hidden,
        keys=hidden.clone(),
        cls_attention=torch.rand(batch, t) if has_cls else None,
        received_attention=None,
        has_cls=has_cls,
    )


def test_keeps_cls_and_distinct_patches_in_position_order():
    result = RandomSelect(budget=5, seed=1).compress(capture())
    assert result.tokens.shape == (3, 5, 2)
    for b in range(3):
        kept = result.tokens[b, :, 0].tolist()
        assert kept[0] == 0  # CLS first
        assert kept == sorted(kept) and len(set(kept)) == 5
        assert sorted(result.index[b].tolist()) == kept


def test_images_in_a_batch_get_different_draws():
    """Unnamed images draw in order from one generator seeded by `seed`: image b keeps CLS and
    the 4 patches where row b of that generator's (3, 16) uniform noise is highest."""
    result = RandomSelect(budget=5, seed=1).compress(capture())
    noise = torch.rand(3, 16, generator=torch.Generator().manual_seed(1))
    expected = [[0, *sorted((noise[b].topk(4).indices + 1).tolist())] for b in range(3)]
    assert [result.tokens[b, :, 0].int().tolist() for b in range(3)] == expected
    assert len({tuple(row) for row in expected}) == 3


def test_same_seed_same_draws_other_seed_differs():
    a = RandomSelect(budget=6, seed=3).compress(capture()).index
    b = RandomSelect(budget=6, seed=3).compress(capture()).index
    c = RandomSelect(budget=6, seed=4).compress(capture()).index
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_without_cls_every_token_is_a_patch():
    result = RandomSelect(budget=4, seed=0).compress(capture(has_cls=False))
    assert result.tokens.shape == (3, 4, 2)
    assert all(len(set(result.index[b].tolist())) == 4 for b in range(3))


def test_draws_cover_patches_uniformly():
    selector = RandomSelect(budget=5, seed=0)
    counts = torch.zeros(17)
    for _ in range(200):
        index = selector.compress(capture(batch=4)).index
        counts += torch.bincount(index.flatten(), minlength=17).float()
    patch_counts = counts[1:]  # 4 patches per image x 800 images over 16 patches = 200 expected
    assert counts[0] == 800
    assert patch_counts.min() > 150 and patch_counts.max() < 250


@pytest.mark.parametrize("budget", [None, 0, 1, 18])
def test_impossible_budgets_name_tokens(budget):
    with pytest.raises(BudgetError, match="tokens"):
        RandomSelect(budget=budget).output_tokens(16, True)


def test_named_samples_get_their_own_draws_whatever_the_batch():
    # the evaluation loop names each batch's samples: a sample's draws then depend on its id and
    # the seed only, not on its batch, its DDP rank or a resumed run
    together = RandomSelect(budget=5, seed=2)
    together.sample_keys = ["a", "b", "c"]
    alone = RandomSelect(budget=5, seed=2)
    alone.sample_keys = ["c"]
    first = together.compress(capture(batch=3)).index
    assert torch.equal(alone.compress(capture(batch=1)).index[0], first[2])
    other_seed = RandomSelect(budget=5, seed=3)
    other_seed.sample_keys = ["c"]
    assert not torch.equal(other_seed.compress(capture(batch=1)).index[0], first[2])
