"""ToMe-style bipartite soft matching (Bolya et al., ICLR 2023), applied at the selection layer
until the budget is reached.

One round: the tokens alternate into sets A (even positions) and B (odd); every A token finds its
most similar B token (cosine of the layer's keys, mean over heads); the r A tokens with the most
similar partners are merged into them (size-weighted averages of features and keys, sizes add),
the CLS token is never merged. ToMe does one round per layer with fixed r; here all rounds happen
at one layer, r = min(tokens left to remove, mergeable A tokens), until the budget is met. Output
tokens (and the tokens between rounds) are in ascending order of the first original position each
one covers, CLS first."""

from __future__ import annotations

import torch
from torch import Tensor

from vzexp.compress.base import CompressionResult, Compressor
from vzexp.compress.budget import check_tokens
from vzexp.compress.tokens import take, unit
from vzexp.encoders.capture import LayerCapture


def bipartite_round(
    x: Tensor, metric: Tensor, size: Tensor, origin: Tensor, r: int, protect_first: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One ToMe matching round removing r tokens. x (B, T, d) holds each token's average feature,
    metric (B, T, k) its average key, size (B, T, 1) how many original tokens it stands for,
    origin (B, T) the first original position it covers. The result is sorted by origin, so the
    A/B alternation of the next round stays spatial and CLS stays first."""
    a, b = unit(metric[:, ::2]), unit(metric[:, 1::2])
    scores = torch.bmm(a, b.transpose(1, 2))
    if protect_first:
        scores[:, 0, :] = -float("inf")
    node_max, node_idx = scores.max(dim=2)
    edge_idx = node_max.argsort(dim=1, descending=True, stable=True)
    src_idx, unm_idx = edge_idx[:, :r], edge_idx[:, r:]
    dst_idx = node_idx.gather(1, src_idx)

    def merge(values: Tensor, reduce: str = "sum") -> Tensor:
        va, vb = values[:, ::2], values[:, 1::2]
        src = take(va, src_idx)
        dst = vb.scatter_reduce(
            1, dst_idx.unsqueeze(-1).expand(-1, -1, values.shape[-1]), src, reduce=reduce
        )
        return torch.cat([take(va, unm_idx), dst], dim=1)

    weighted = merge(torch.cat([x * size, metric * size, size], dim=-1))
    d, k = x.shape[-1], metric.shape[-1]
    new_size = weighted[..., -1:]
    new_x = weighted[..., :d] / new_size
    new_metric = weighted[..., d : d + k] / new_size
    new_origin = merge(origin.unsqueeze(-1), reduce="amin").squeeze(-1)
    order = new_origin.argsort(dim=1)
    return (
        take(new_x, order),
        take(new_metric, order),
        take(new_size, order),
        new_origin.gather(1, order),
    )


class ToMe(Compressor):
    name = "tome"

    def __init__(self, budget: int | None = None, layer: int = -2, keep_cls: bool = True):
        super().__init__(layer)
        self.budget, self.keep_cls = budget, keep_cls

    def output_tokens(self, num_patches: int, has_cls: bool) -> int:
        cls = int(has_cls and self.keep_cls)
        seq_len = num_patches + cls
        return check_tokens(self.budget, 1 + cls, seq_len, num_patches, bool(cls))

    def compress(self, capture: LayerCapture) -> CompressionResult:
        target = self.output_tokens(capture.num_patches, capture.has_cls)
        x, metric = capture.hidden, capture.keys
        if capture.has_cls and not self.keep_cls:
            x, metric = x[:, 1:], metric[:, 1:]
        protect = capture.has_cls and self.keep_cls
        b, t, _ = x.shape
        size = torch.ones(b, t, 1, dtype=x.dtype, device=x.device)
        origin = torch.arange(t, device=x.device).expand(b, -1)
        while x.shape[1] > target:
            mergeable = (x.shape[1] + 1) // 2 - int(protect)  # A tokens, CLS excluded
            r = min(x.shape[1] - target, mergeable)
            x, metric, size, origin = bipartite_round(x, metric, size, origin, r, protect)
        return CompressionResult(tokens=x, index=None)
