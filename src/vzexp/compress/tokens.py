"""Small tensor helpers shared by the strategies: gather kept rows, masks from indices, CLS handling."""

from __future__ import annotations

import torch
from torch import Tensor


def gather_rows(x: Tensor, mask: Tensor, count: int) -> Tensor:
    """Rows of x (B, T, d) where mask is True, in ascending position order -> (B, count, d)."""
    return x[mask].view(x.shape[0], count, x.shape[-1])


def keep_mask(index: Tensor, length: int) -> Tensor:
    """(B, K) indices -> (B, length) boolean mask of the kept positions."""
    mask = torch.zeros(index.shape[0], length, dtype=torch.bool, device=index.device)
    return mask.scatter_(1, index, True)


def take(x: Tensor, index: Tensor) -> Tensor:
    """Rows of x (B, T, d) at index (B, K), in index order -> (B, K, d)."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def with_cls(index: Tensor) -> Tensor:
    """Prepend sequence position 0 (CLS) to patch indices (B, K) -> (B, K + 1)."""
    zeros = torch.zeros(index.shape[0], 1, dtype=index.dtype, device=index.device)
    return torch.cat([zeros, index], dim=1)


def unit(x: Tensor) -> Tensor:
    """Row-wise unit length (cosine similarity = dot product of unit rows)."""
    return x / x.norm(dim=-1, keepdim=True)


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """(B, M, d), (B, N, d) -> (B, M, N) cosine similarities."""
    return torch.bmm(unit(a), unit(b).transpose(1, 2))
