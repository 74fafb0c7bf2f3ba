"""Hand-built LayerCapture objects for the strategy tests (no model needed)."""

from __future__ import annotations

import torch

from vzexp.encoders.capture import LayerCapture


def make_capture(hidden, keys, scores, has_cls=True):
    """hidden (T, d) or (B, T, d), keys (T, k), scores (T,): the CLS attention row for a CLS
    tower, the attention received otherwise."""
    hidden = torch.as_tensor(hidden, dtype=torch.float32)
    keys = torch.as_tensor(keys, dtype=torch.float32)
    scores = torch.as_tensor(scores, dtype=torch.float32)
    if hidden.dim() == 2:
        hidden, keys, scores = hidden[None], keys[None], scores[None]
    return LayerCapture(
        hidden=hidden,
        keys=keys,
        cls_attention=scores if has_cls else None,
        received_attention=None if has_cls else scores,
        has_cls=has_cls,
    )
