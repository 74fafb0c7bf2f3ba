"""Capture what token-compression strategies read from ONE layer of a ViT vision tower.

The tower runs with whatever attention implementation it was built with (SDPA by default).
Forward hooks on the selection layer grab the query/key projections and the layer output; the
attention row(s) the strategy needs are then recomputed from those projections at that layer
only. This is how we avoid the reference implementation's eager attention with every layer's
maps kept (and transformers 5 returns no maps at all under SDPA with output_attentions=True).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vzexp.errors import ConfigError


@dataclass
class TowerInfo:
    layers: nn.ModuleList
    num_heads: int
    head_dim: int
    scale: float
    has_cls: bool
    num_patches: int
    patch_size: int

    @property
    def grid(self) -> int:
        return cfg_side(self.num_patches)

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def seq_len(self) -> int:
        return self.num_patches + int(self.has_cls)


@dataclass
class LayerCapture:
    """Tensors read at the selection layer, for a batch of B images with T = N (+1 CLS) tokens.

    hidden:   (B, T, d) output hidden states of the feature layer (LLaVA's features).
    keys:     (B, T, head_dim) key projection of the selection layer, averaged over heads.
    cls_attention: (B, T) attention probabilities of the CLS query, summed over heads
              (None for towers without CLS).
    received_attention: (B, T) attention each token receives, averaged over heads and
              queries (filled only when asked for: it needs the full map at that layer).
    """

    hidden: Tensor
    keys: Tensor
    cls_attention: Tensor | None
    received_attention: Tensor | None
    has_cls: bool
    # Raw q_proj output at CLS (B, H*hd) and k_proj output (B, T, H*hd), heads not split: only
    # when asked for (LLaVA-PruMerge's single-head attention over the full width).
    cls_query: Tensor | None = None
    key_states: Tensor | None = None
    # The model's projector, set by the LLaVA adapter, for strategies that measure distances in
    # the LLM's input space (DivPrune); None when compressing a bare tower.
    project: Callable[[Tensor], Tensor] | None = None

    @property
    def num_patches(self) -> int:
        return self.hidden.shape[1] - int(self.has_cls)


def cfg_side(num_patches: int) -> int:
    """The side of a square patch grid."""
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise ValueError(f"{num_patches} patches do not form a square grid")
    return side


def vit_layers(root: nn.Module) -> nn.ModuleList | None:
    """The encoder's layers: `.encoder.layers` (CLIP, SigLIP) or `.encoder.layer` (DINOv2)."""
    encoder = getattr(root, "encoder", None)
    layers = getattr(encoder, "layers", None)
    return layers if layers is not None else getattr(encoder, "layer", None)


def layer_attention(layer: nn.Module) -> nn.Module:
    """A layer's self-attention (with q_proj / k_proj): `self_attn` (CLIP, SigLIP) or
    `attention` (DINOv2)."""
    attn = getattr(layer, "self_attn", None)
    return attn if attn is not None else layer.attention


def vit_root(vision_model: nn.Module) -> nn.Module:
    """The module of a ViT tower that holds its `.encoder` (ConfigError for other towers)."""
    # transformers 5: CLIPVisionModel/SiglipVisionModel/Dinov2Model hold .encoder directly;
    # 4.x-style wrappers (and CLIPModel) hold it under .vision_model.
    for candidate in (vision_model, getattr(vision_model, "vision_model", None)):
        if candidate is not None and vit_layers(candidate) is not None:
            return candidate
    raise ConfigError(
        "encoder",
        type(vision_model).__name__,
        "a ViT tower whose layers' attention has q_proj/k_proj (CLIP, SigLIP, DINOv2)",
    )


def tower_info(vision_model: nn.Module) -> TowerInfo:
    root = vit_root(vision_model)
    cfg = root.config
    if getattr(cfg, "num_register_tokens", 0):
        raise ConfigError(
            "encoder",
            type(root).__name__,
            "a tower without register tokens (DINOv2 with registers is not supported yet)",
        )
    layers = vit_layers(root)
    attn = layer_attention(layers[0])
    grid = cfg.image_size // cfg.patch_size
    # CLIP prepends a class embedding, DINOv2 a CLS token; SigLIP has none.
    embeddings = getattr(root, "embeddings", None)
    has_cls = hasattr(embeddings, "class_embedding") or hasattr(embeddings, "cls_token")
    heads = getattr(attn, "num_heads", None) or attn.num_attention_heads
    scale = getattr(attn, "scale", None) or attn.scaling
    return TowerInfo(
        layers=layers,
        num_heads=heads,
        head_dim=attn.head_dim,
        scale=float(scale),
        has_cls=has_cls,
        num_patches=grid * grid,
        patch_size=cfg.patch_size,
    )


def resolve_layer(layer: int, depth: int, key: str = "compressor.layer") -> int:
    """Map a hidden-states index (LLaVA's vision_feature_layer convention: -1 is the last
    layer's output, -2 the one before; k > 0 is the output of the k-th layer) to a module index."""
    if -depth <= layer <= -1:
        return depth + layer
    if 1 <= layer <= depth:
        return layer - 1
    raise ConfigError(
        key,
        layer,
        f"an encoder layer in [-{depth}, -1] or [1, {depth}] (this tower has {depth} layers)",
    )


def _first(output):
    return output[0] if isinstance(output, tuple) else output


@torch.no_grad()
def capture_layer(
    vision_model: nn.Module,
    pixel_values: Tensor,
    layer: int = -2,
    feature_layer: int | None = None,
    need_received: bool = False,
    keep_projections: bool = False,
    **forward_kwargs,
) -> LayerCapture:
    """Run the tower once and capture the selection layer's keys and attention, and the
    feature layer's hidden states (default: the selection layer itself). `forward_kwargs` go to
    the tower (e.g. interpolate_pos_encoding=True for a smaller image)."""
    info = tower_info(vision_model)
    sel = resolve_layer(layer, info.depth)
    feat = (
        sel
        if feature_layer is None
        else resolve_layer(feature_layer, info.depth, "model.feature_layer")
    )
    attn = layer_attention(info.layers[sel])
    store: dict[str, Tensor] = {}
    want_all_queries = need_received or not info.has_cls

    def keep_queries(_m, _i, out):
        # Only the CLS query is needed unless attention received is asked for; clone so the
        # slice does not keep the whole (B, T, d) query tensor alive.
        store["q"] = out if want_all_queries else out[:, :1].clone()

    def keep_keys(_m, _i, out):
        store["k"] = out

    def keep_hidden(_m, _i, out):
        store["h"] = _first(out)

    handles = [
        attn.q_proj.register_forward_hook(keep_queries),
        attn.k_proj.register_forward_hook(keep_keys),
        info.layers[feat].register_forward_hook(keep_hidden),
    ]
    try:
        vision_model(pixel_values=pixel_values, **forward_kwargs)
    finally:
        for h in handles:
            h.remove()

    b, t, _ = store["k"].shape
    keys = store["k"].view(b, t, info.num_heads, info.head_dim)  # (B, T, H, hd)
    queries = store["q"].view(b, store["q"].shape[1], info.num_heads, info.head_dim)

    def probs(q: Tensor) -> Tensor:  # (B, Tq, H, hd) -> (B, H, Tq, T), float32 softmax like eager
        logits = torch.einsum("bqhd,bkhd->bhqk", q.float(), keys.float()) * info.scale
        return logits.softmax(dim=-1)

    cls_attention = received = None
    if info.has_cls:
        cls_attention = probs(queries[:, :1])[:, :, 0, :].sum(dim=1).to(store["k"].dtype)
    if want_all_queries:
        received = probs(queries).mean(dim=(1, 2)).to(store["k"].dtype)
    return LayerCapture(
        hidden=store["h"],
        keys=keys.mean(dim=2),
        cls_attention=cls_attention,
        received_attention=received,
        has_cls=info.has_cls,
        cls_query=store["q"][:, 0] if keep_projections and info.has_cls else None,
        key_states=store["k"] if keep_projections else None,
    )
