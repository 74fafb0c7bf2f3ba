"""capture_layer on tiny random CLIP / SigLIP towers, checked against eager attention maps.

Note: each model gets its OWN config object. `_from_config(cfg, attn_implementation=...)` sets the
implementation on the config it is given, so sharing one config between an sdpa and an eager
model silently turns the "sdpa" model eager.
"""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel

from vzexp.compress.visionzip import VisionZip
from vzexp.encoders.capture import LayerCapture, capture_layer, resolve_layer, tower_info
from vzexp.errors import ConfigError

DEPTH = 4
HEADS = 4
HIDDEN = 32
HEAD_DIM = HIDDEN // HEADS
NUM_PATCHES = (32 // 8) ** 2  # 16


def tiny_kwargs():
    return dict(
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=DEPTH,
        num_attention_heads=HEADS,
        image_size=32,
        patch_size=8,
    )


def build_pair(model_cls, config_cls, seed):
    torch.manual_seed(seed)
    sdpa = model_cls._from_config(config_cls(**tiny_kwargs()), attn_implementation="sdpa").eval()
    eager = model_cls._from_config(config_cls(**tiny_kwargs()), attn_implementation="eager").eval()
    eager.load_state_dict(sdpa.state_dict())
    assert sdpa.config._attn_implementation == "sdpa"
    assert eager.config._attn_implementation == "eager"
    return sdpa, eager


@pytest.fixture(scope="module")
def clip_pair():
    return build_pair(CLIPVisionModel, CLIPVisionConfig, seed=0)


@pytest.fixture(scope="module")
def siglip_pair():
    return build_pair(SiglipVisionModel, SiglipVisionConfig, seed=1)


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(123))


def eager_reference(eager, pixels, layer):
    """Everything from the eager model: attention map and output hidden states of the selected
    layer, plus keys recomputed from that layer's input (caught with a forward pre-hook)."""
    sel = resolve_layer(layer, DEPTH)
    block = eager.encoder.layers[sel]
    inputs = {}

    def grab(_module, args, kwargs):
        inputs["x"] = args[0] if args else kwargs["hidden_states"]

    handle = block.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            out = eager(pixel_values=pixels, output_attentions=True, output_hidden_states=True)
    finally:
        handle.remove()
    with torch.no_grad():
        k = block.self_attn.k_proj(block.layer_norm1(inputs["x"]))
    b, t, _ = k.shape
    keys = k.view(b, t, HEADS, HEAD_DIM).mean(dim=2)
    assert len(out.hidden_states) == DEPTH + 1 and len(out.attentions) == DEPTH
    return {
        "attn": out.attentions[sel],  # (B, H, T, T)
        "hidden": out.hidden_states[layer],  # the hidden-states index convention
        "hidden_all": out.hidden_states,
        "keys": keys,
        "layer_input": inputs["x"],
    }


# --------------------------------------------------------------------------------------------
# CLIP
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", [-2, -1, 1])
def test_clip_capture_matches_eager(clip_pair, pixels, layer):
    sdpa, eager = clip_pair
    ref = eager_reference(eager, pixels, layer)
    cap = capture_layer(sdpa, pixels, layer=layer, need_received=True)
    t = NUM_PATCHES + 1
    assert cap.has_cls is True
    assert cap.num_patches == NUM_PATCHES
    assert cap.hidden.shape == (2, t, HIDDEN)
    assert cap.keys.shape == (2, t, HEAD_DIM)
    assert cap.cls_attention.shape == (2, t)
    torch.testing.assert_close(cap.cls_attention, ref["attn"][:, :, 0, :].sum(1), rtol=0, atol=1e-5)
    torch.testing.assert_close(cap.hidden, ref["hidden"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cap.keys, ref["keys"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        cap.received_attention, ref["attn"].mean(dim=(1, 2)), rtol=0, atol=1e-5
    )
    # The CLS row summed over heads is a distribution per head: sums to the number of heads.
    torch.testing.assert_close(cap.cls_attention.sum(-1), torch.full((2,), float(HEADS)))


def test_clip_hidden_states_index_convention(clip_pair, pixels):
    sdpa, eager = clip_pair
    ref = eager_reference(eager, pixels, -2)
    for layer, hs_index in [(-1, DEPTH), (-2, DEPTH - 1), (1, 1), (DEPTH, DEPTH), (-DEPTH, 1)]:
        cap = capture_layer(sdpa, pixels, layer=layer)
        torch.testing.assert_close(cap.hidden, ref["hidden_all"][hs_index], rtol=1e-5, atol=1e-5)
    # The selection layer's input is the previous hidden state.
    torch.testing.assert_close(ref["layer_input"], ref["hidden_all"][DEPTH - 2])


def test_clip_received_attention_only_when_asked(clip_pair, pixels):
    cap = capture_layer(clip_pair[0], pixels)
    assert cap.received_attention is None
    assert cap.cls_attention is not None


def test_clip_feature_layer_differs_from_selection_layer(clip_pair, pixels):
    sdpa, eager = clip_pair
    ref_sel = eager_reference(eager, pixels, -2)
    ref_feat = eager_reference(eager, pixels, -1)
    cap = capture_layer(sdpa, pixels, layer=-2, feature_layer=-1)
    torch.testing.assert_close(cap.hidden, ref_feat["hidden"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cap.keys, ref_sel["keys"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        cap.cls_attention, ref_sel["attn"][:, :, 0, :].sum(1), rtol=0, atol=1e-5
    )
    with pytest.raises(ConfigError) as err:
        capture_layer(sdpa, pixels, layer=-2, feature_layer=0)
    assert err.value.key == "model.feature_layer"


def test_capture_keeps_sdpa_and_never_asks_for_attention_maps(clip_pair, pixels):
    sdpa, _ = clip_pair
    calls, attn_weights = [], []

    def pre_hook(_module, args, kwargs):
        calls.append(dict(kwargs))

    def attn_hook(_module, _args, output):
        attn_weights.append(output[1] if isinstance(output, tuple) else None)

    handles = [sdpa.register_forward_pre_hook(pre_hook, with_kwargs=True)]
    handles += [layer.self_attn.register_forward_hook(attn_hook) for layer in sdpa.encoder.layers]
    try:
        capture_layer(sdpa, pixels, need_received=True)
    finally:
        for h in handles:
            h.remove()
    assert len(calls) == 1
    assert not calls[0].get("output_attentions", False)
    assert not calls[0].get("output_hidden_states", False)
    assert sdpa.config._attn_implementation == "sdpa"
    # No layer materialised an attention map (SDPA returns None for the weights).
    assert len(attn_weights) == DEPTH and all(w is None for w in attn_weights)
    # And capture left no hooks behind.
    assert not sdpa.encoder.layers[DEPTH - 2]._forward_hooks
    assert not sdpa.encoder.layers[DEPTH - 2].self_attn.q_proj._forward_hooks
    assert not sdpa.encoder.layers[DEPTH - 2].self_attn.k_proj._forward_hooks


def test_tower_info(clip_pair, siglip_pair):
    info = tower_info(clip_pair[0])
    assert (
        info.depth,
        info.num_heads,
        info.head_dim,
        info.has_cls,
        info.num_patches,
        info.seq_len,
    ) == (DEPTH, HEADS, HEAD_DIM, True, NUM_PATCHES, NUM_PATCHES + 1)
    assert info.scale == pytest.approx(HEAD_DIM**-0.5)
    info = tower_info(siglip_pair[0])
    assert (info.has_cls, info.num_patches, info.seq_len) == (False, NUM_PATCHES, NUM_PATCHES)


def test_tower_info_rejects_non_vit():
    with pytest.raises(ConfigError) as err:
        tower_info(torch.nn.Linear(2, 2))
    assert err.value.key == "encoder"


# --------------------------------------------------------------------------------------------
# resolve_layer
# --------------------------------------------------------------------------------------------
def test_resolve_layer_valid():
    assert [resolve_layer(k, 4) for k in (-1, -2, -3, -4)] == [3, 2, 1, 0]
    assert [resolve_layer(k, 4) for k in (1, 2, 3, 4)] == [0, 1, 2, 3]
    assert resolve_layer(-2, 24) == 22


@pytest.mark.parametrize("layer", [0, DEPTH + 1, -DEPTH - 1])
def test_resolve_layer_rejects(layer, clip_pair, pixels):
    with pytest.raises(ConfigError) as err:
        resolve_layer(layer, DEPTH)
    assert err.value.key == "compressor.layer"
    assert f"compressor.layer={layer}" in str(err.value)
    assert f"[-{DEPTH}, -1]" in str(err.value) and f"[1, {DEPTH}]" in str(err.value)
    with pytest.raises(ConfigError) as err:
        capture_layer(clip_pair[0], pixels, layer=layer)
    assert err.value.key == "compressor.layer"


# --------------------------------------------------------------------------------------------
# SigLIP (no CLS)
# --------------------------------------------------------------------------------------------
def test_siglip_capture(siglip_pair, pixels):
    sdpa, eager = siglip_pair
    ref = eager_reference(eager, pixels, -2)
    cap = capture_layer(sdpa, pixels, layer=-2)
    assert cap.has_cls is False
    assert cap.cls_attention is None
    assert cap.received_attention is not None
    assert cap.num_patches == NUM_PATCHES
    assert cap.hidden.shape == (2, NUM_PATCHES, HIDDEN)
    torch.testing.assert_close(
        cap.received_attention, ref["attn"].mean(dim=(1, 2)), rtol=0, atol=1e-5
    )
    torch.testing.assert_close(cap.hidden, ref["hidden"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cap.keys, ref["keys"], rtol=1e-5, atol=1e-5)
    # Column mean of row-stochastic maps: sums to 1 per image.
    torch.testing.assert_close(cap.received_attention.sum(-1), torch.ones(2))


# --------------------------------------------------------------------------------------------
# End to end: VisionZip on the SDPA capture == VisionZip from the eager model's tensors
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dominant, contextual", [(6, 4), (2, 5), (9, 8)])
def test_visionzip_end_to_end_clip(clip_pair, pixels, visionzip_reference, dominant, contextual):
    sdpa, eager = clip_pair
    ref = eager_reference(eager, pixels, -2)
    from_eager = LayerCapture(
        hidden=ref["hidden"],
        keys=ref["keys"],
        cls_attention=ref["attn"][:, :, 0, :].sum(1),
        received_attention=None,
        has_cls=True,
    )
    vz = VisionZip(dominant=dominant, contextual=contextual)
    ours = vz.compress(capture_layer(sdpa, pixels, layer=-2))
    expected = vz.compress(from_eager)
    assert torch.equal(ours.index, expected.index)
    assert torch.equal(ours.assignment, expected.assignment)
    torch.testing.assert_close(ours.tokens, expected.tokens, rtol=1e-5, atol=1e-5)
    # ... and both agree with the loop reference on the eager tensors.
    ref_index, ref_tokens, ref_assignment = visionzip_reference(
        from_eager.hidden, from_eager.keys, from_eager.cls_attention, True, dominant, contextual
    )
    assert torch.equal(ours.index, ref_index)
    assert ours.assignment.tolist() == ref_assignment
    torch.testing.assert_close(ours.tokens, ref_tokens, rtol=1e-5, atol=1e-5)
    assert ours.tokens.shape == (2, dominant + contextual, HIDDEN)


def test_visionzip_end_to_end_clip_budget(clip_pair, pixels):
    sdpa, eager = clip_pair
    ref = eager_reference(eager, pixels, -2)
    from_eager = LayerCapture(
        ref["hidden"], ref["keys"], ref["attn"][:, :, 0, :].sum(1), None, True
    )
    vz = VisionZip(budget=8)  # 16 patches + CLS: contextual round(1.25) = 1, dominant 7
    ours = vz.compress(capture_layer(sdpa, pixels))
    expected = vz.compress(from_eager)
    assert ours.tokens.shape == (2, 8, HIDDEN)
    assert torch.equal(ours.index, expected.index)
    torch.testing.assert_close(ours.tokens, expected.tokens, rtol=1e-5, atol=1e-5)


def test_visionzip_end_to_end_siglip(siglip_pair, pixels, visionzip_reference):
    sdpa, eager = siglip_pair
    ref = eager_reference(eager, pixels, -2)
    received = ref["attn"].mean(dim=(1, 2))
    from_eager = LayerCapture(ref["hidden"], ref["keys"], None, received, False)
    vz = VisionZip(dominant=5, contextual=3)
    ours = vz.compress(capture_layer(sdpa, pixels))
    expected = vz.compress(from_eager)
    assert torch.equal(ours.index, expected.index)
    torch.testing.assert_close(ours.tokens, expected.tokens, rtol=1e-5, atol=1e-5)
    ref_index, ref_tokens, _ = visionzip_reference(
        ref["hidden"], ref["keys"], received, False, 5, 3
    )
    assert torch.equal(ours.index, ref_index)
    torch.testing.assert_close(ours.tokens, ref_tokens, rtol=1e-5, atol=1e-5)
    assert ours.tokens.shape == (2, 8, HIDDEN)
