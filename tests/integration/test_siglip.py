"""Encoders without CLS: a tiny LLaVA with a real SigLIP tower (select=full). Dominant tokens are
the ones that receive the most attention at the selection layer (mean over heads and queries)."""

from __future__ import annotations

import pytest
import torch

from vzexp.compress import NoCompression, VisionZip
from vzexp.compress.prumerge import PruMerge
from vzexp.compress.registry import strategies
from vzexp.errors import ConfigError
from vzexp.models.build import assemble
from vzexp.models.install import install, installed, uninstall

SIGLIP = {
    "kind": "siglip",
    "config": dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=56,
        patch_size=7,
    ),
}


@pytest.fixture(scope="module")
def siglip_llava(tiny_parts):
    _, llm, words = tiny_parts
    return assemble(SIGLIP, llm, words, select="full", seed=0)


def inputs_for(processor, images):
    conv = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": "What color is the square?"}],
        }
    ]
    text = processor.apply_chat_template(conv, add_generation_prompt=True)
    return processor(images=images, text=[text] * len(images), return_tensors="pt", padding=True)


def test_all_tokens_match_the_models_own_path(siglip_llava, images):
    model, processor = siglip_llava
    inputs = inputs_for(processor, images[:2])
    assert (inputs.input_ids == model.config.image_token_id).sum() == 2 * 64  # 8x8, no CLS
    with torch.no_grad():
        plain = model(**inputs).logits
        install(model, NoCompression(select="full"))
        try:
            patched = model(**inputs).logits
        finally:
            uninstall(model)
    torch.testing.assert_close(patched, plain)


def test_visionzip_keeps_the_most_attended_patches(siglip_llava, images, tiny_parts):
    model, processor = siglip_llava
    inputs = inputs_for(processor, images[:2])
    install(model, VisionZip(dominant=6, contextual=2))
    try:
        out = model.generate(**inputs, max_new_tokens=2, do_sample=False)
        result = installed(model).stats.last
    finally:
        uninstall(model)
    assert out.shape[0] == 2 and result.tokens.shape == (2, 8, 32)
    # Independent check: eager attentions of the same tower, layer -2, mean over heads and queries.
    _, llm, words = tiny_parts
    eager, _ = assemble(SIGLIP, llm, words, select="full", seed=0, attn_implementation="eager")
    eager.load_state_dict(model.state_dict())
    with torch.no_grad():
        tower_out = eager.model.vision_tower(
            pixel_values=inputs.pixel_values, output_attentions=True, output_hidden_states=True
        )
    received = tower_out.attentions[-2].mean(dim=(1, 2))  # (B, 64)
    assert result.index.tolist() == received.topk(6, dim=1).indices.tolist()
    kept = result.index.sort(dim=1).values
    features = tower_out.hidden_states[-2]
    expected = features.gather(1, kept.unsqueeze(-1).expand(-1, -1, features.shape[-1]))
    torch.testing.assert_close(result.tokens[:, :6], expected, rtol=1e-4, atol=1e-5)


def test_cls_only_strategies_refuse_a_tower_without_cls(siglip_llava):
    model, _ = siglip_llava
    usable = strategies(lambda cls: cls.kind == "encoder" and not cls.needs_cls)
    with pytest.raises(ConfigError) as info:
        install(model, PruMerge(budget=8))
    assert str(info.value) == (
        "compressor='prumerge' is not allowed: a tower with a CLS token (prumerge ranks by CLS "
        f"attention); for towers without CLS use one of {', '.join(usable)}"
    )


def test_default_select_is_refused_for_a_tower_without_cls(tiny_parts):
    _, llm, words = tiny_parts
    with pytest.raises(ConfigError, match="model.select='default'"):
        assemble(SIGLIP, llm, words, select="default", seed=0)
