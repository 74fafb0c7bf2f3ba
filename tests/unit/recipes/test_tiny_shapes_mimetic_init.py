"""Mimetic attention init: the products W_q W_k^T and W_v W_o take the paper's form."""

import torch
from transformers import AutoConfig, CLIPVisionModel

from tests.conftest import TINY_ENCODER
from vzexp.encoders.capture import vit_root
from vzexp.recipes.tiny_shapes.mimetic_init import low_rank_factors, mimetic_init_clip_tower


def _tower() -> CLIPVisionModel:
    config = AutoConfig.for_model(
        "clip_vision_model", **TINY_ENCODER["config"]
    )  # width 32, 4 heads
    return CLIPVisionModel._from_config(config)


def test_factor_is_best_low_rank_split():
    m = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    a, b = low_rank_factors(m, 1)
    assert torch.allclose(a @ b.T, torch.tensor([[3.0, 0.0], [0.0, 0.0]]), atol=1e-6)
    a, b = low_rank_factors(m, 2)
    assert torch.allclose(a @ b.T, m, atol=1e-6)


def test_value_output_product_is_a_z_minus_b_identity():
    tower = _tower()
    mimetic_init_clip_tower(tower, seed=0)
    attn = vit_root(tower).encoder.layers[0].self_attn
    # x -> out_proj(v_proj(x)) = x @ Wv.T @ Wo.T, full rank: exactly 0.4 Z - 0.4 I
    product = attn.v_proj.weight.T @ attn.out_proj.weight.T
    diagonal = product.diagonal()
    off = product - torch.diag(diagonal)
    assert abs(diagonal.mean().item() + 0.4) < 0.1
    assert abs(off.std().item() - 0.4 / 32**0.5) < 0.02


def test_each_head_prefers_similar_tokens():
    tower = _tower()
    mimetic_init_clip_tower(tower, seed=0)
    attn = vit_root(tower).encoder.layers[1].self_attn
    for head in range(4):
        rows = slice(head * 8, (head + 1) * 8)
        qk = attn.q_proj.weight[rows].T @ attn.k_proj.weight[rows]  # x q . y k = x (qk) y^T
        # a rank-8 piece of 0.7 Z + 0.7 I: positive on the diagonal, unlike a random init
        assert qk.diagonal().mean() > 3 * (qk - torch.diag(qk.diagonal())).abs().mean()


def test_same_seed_same_weights_and_other_seed_differs():
    a, b, c = _tower(), _tower(), _tower()
    mimetic_init_clip_tower(a, seed=1)
    mimetic_init_clip_tower(b, seed=1)
    mimetic_init_clip_tower(c, seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    q = [k for k in sa if "q_proj.weight" in k][0]
    assert torch.equal(sa[q], sb[q])
    assert not torch.equal(sa[q], sc[q])
