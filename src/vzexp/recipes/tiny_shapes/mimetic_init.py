"""Mimetic initialisation of self-attention (Trockman & Kolter, "Mimetic Initialization of
Self-Attention Layers", ICML 2023) for the tiny vision tower.

A ViT trained from scratch on little data learns slowly to attend to its neighbours: on the shapes
scenes a randomly initialised tiny CLIP tower stays at the accuracy of a patch-local classifier for
the object's shape (shape needs the object's other patches). Initialising each head so that
W_q W_k^T ~ a*Z + b*I (tokens attend to similar tokens: same object, nearby) and W_v W_o ~ a*Z - b*I,
as pretrained ViTs look, removes that plateau (measured in experiments/build_tiny/README.md)."""

from __future__ import annotations

import torch
from torch import nn


def low_rank_factors(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A, B with A @ B.T the best rank-`rank` approximation of `matrix` (split via the SVD)."""
    u, s, vh = torch.linalg.svd(matrix)
    root = s[:rank].sqrt()
    return u[:, :rank] * root, vh.T[:, :rank] * root


@torch.no_grad()
def mimetic_init_(
    attention_layers: list[nn.Module],
    num_heads: int,
    generator: torch.Generator,
    qk: tuple[float, float] = (0.7, 0.7),
    vo: tuple[float, float] = (0.4, 0.4),
) -> None:
    """In place, for modules with q_proj/k_proj/v_proj Linear layers and out_proj (CLIP, SigLIP)
    or o_proj (Llama, with as many key/value heads as query heads). (a, b) pairs as in the paper's
    ViT-Tiny setting."""
    for attn in attention_layers:
        out_proj = attn.out_proj if hasattr(attn, "out_proj") else attn.o_proj
        width = attn.q_proj.weight.shape[1]
        head_dim = width // num_heads
        for head in range(num_heads):
            z = torch.randn(width, width, generator=generator) / width**0.5
            q, k = low_rank_factors(qk[0] * z + qk[1] * torch.eye(width), head_dim)
            rows = slice(head * head_dim, (head + 1) * head_dim)
            # nn.Linear computes x @ W.T: the query of x is x @ q, so W = q.T
            attn.q_proj.weight[rows] = q.T
            attn.k_proj.weight[rows] = k.T
        z = torch.randn(width, width, generator=generator) / width**0.5
        v, o = low_rank_factors(vo[0] * z - vo[1] * torch.eye(width), width)
        attn.v_proj.weight.copy_(v.T)
        out_proj.weight.copy_(o)  # x @ v @ o.T: out_proj.weight.T = o.T


def mimetic_init_clip_tower(tower: nn.Module, seed: int) -> None:
    """Mimetic init of every self-attention layer of a transformers CLIP vision tower."""
    from vzexp.encoders.capture import vit_root

    layers = [layer.self_attn for layer in vit_root(tower).encoder.layers]
    mimetic_init_(layers, tower.config.num_attention_heads, torch.Generator().manual_seed(seed))
