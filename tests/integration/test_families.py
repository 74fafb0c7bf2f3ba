"""Every supported family through its real transformers class, built tiny from a config (random
weights), on the whole path: processor -> capture -> compress -> splice -> generate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from family_fixtures import FAMILIES
from PIL import Image

from vzexp.compress import NoCompression
from vzexp.compress.base import CompressionResult
from vzexp.compress.registry import available, build_compressor, strategies
from vzexp.errors import ConfigError
from vzexp.models.install import install, installed, uninstall

ANYRES = ["llava_next", "llava_onevision"]
QWEN = ["qwen2_vl", "qwen2_5_vl"]
SIZES = [(40, 60), (50, 50), (60, 30)]  # anyres: 2x2, 2x2 and 2x1 crops (5, 5, 3 views)
QWEN_SIZES = [(56, 84), (70, 70), (84, 42)]  # 4x6, 5x5, 6x3 merged tokens: 24, 25, 18


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):
    model, processor = FAMILIES[request.param]()
    return request.param, model, processor


def batch(name, processor, question="what color is the square ?"):
    rng = np.random.default_rng(0)
    sizes = QWEN_SIZES if name in QWEN else SIZES
    images = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in sizes]
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    prompt = processor.apply_chat_template(conv, add_generation_prompt=True)
    short = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "color ?"}]}],
        add_generation_prompt=True,
    )  # a shorter prompt in the batch: left padding
    return processor(images=images, text=[prompt, short, prompt], return_tensors="pt", padding=True)


def generate(model, inputs, **kw):
    with torch.no_grad():
        return model.generate(
            **inputs,
            max_new_tokens=3,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            **kw,
        )


def strategy_none(model):
    config = model.config
    select = getattr(config, "vision_feature_select_strategy", "full")
    layer = getattr(config, "vision_feature_layer", -1)
    return NoCompression(select=select, layer=layer if isinstance(layer, int) else -1)


def test_none_is_the_models_own_generation(family):
    name, model, processor = family
    inputs = batch(name, processor)
    plain = generate(model, inputs)
    install(model, strategy_none(model))
    try:
        patched = generate(model, inputs)
    finally:
        uninstall(model)
    assert torch.equal(patched.sequences, plain.sequences)
    for a, b in zip(patched.logits, plain.logits):
        torch.testing.assert_close(a, b)


def test_visionzip_runs_the_whole_path_with_fewer_tokens(family):
    name, model, processor = family
    inputs = batch(name, processor)
    full = (inputs.input_ids == model.config.image_token_id).sum(1)
    install(model, build_compressor("visionzip", dominant=4, contextual=2))
    try:
        out = generate(model, inputs)
        stats = installed(model).stats
    finally:
        uninstall(model)
    # the caller's prompt comes back, then the new tokens
    assert torch.equal(out.sequences[:, : inputs.input_ids.shape[1]], inputs.input_ids)
    assert out.sequences.shape[1] == inputs.input_ids.shape[1] + 3
    assert stats.images == 3
    views = [5, 5, 3] if name in ANYRES else [1, 1, 1]
    assert stats.visual_tokens == 6 * sum(views) < int(full.sum())


def expected_refusals(name):
    """The encoder-side strategies a family must refuse, from what each strategy's class needs."""

    def refused(cls) -> bool:
        if name in QWEN:  # no CLS, no square grid
            return cls.needs_cls or cls.grid_based
        if name == "llava_onevision":  # SigLIP: no CLS
            return cls.needs_cls
        return False

    return set(strategies(lambda cls: cls.kind == "encoder" and refused(cls)))


def test_every_encoder_side_strategy_runs_or_says_why_not(family):
    name, model, processor = family
    inputs = batch(name, processor)
    refused = set()
    for strategy in available():
        compressor = build_compressor(strategy, budget=6) if strategy != "none" else None
        if compressor is None or compressor.kind == "llm":
            continue
        try:
            install(model, compressor)
            out = generate(model, inputs)
        except ConfigError as exc:
            refused.add(strategy)
            assert "\n" not in str(exc) and "compressor" in str(exc)
            continue
        finally:
            uninstall(model)
        assert out.sequences.shape[1] == inputs.input_ids.shape[1] + 3, strategy
    assert refused == expected_refusals(name)


def test_llm_side_strategies_are_refused_outside_llava(family):
    name, model, _ = family
    with pytest.raises(ConfigError, match="LLM-side strategies hook LLaVA-1.5"):
        install(model, build_compressor("fastv", budget=6))


@pytest.mark.parametrize("name", ANYRES)
def test_keeping_every_patch_with_newlines_is_the_models_own_anyres_layout(name):
    """Dominant tokens at a budget of every patch (no CLS), laid out with layout=newline, are
    exactly the model's unpadded grid with its image-newline tokens."""
    model, processor = FAMILIES[name]()
    inputs = batch(name, processor)
    keys = ("pixel_values", "image_sizes", "batch_num_images")
    images = {k: inputs[k] for k in keys if k in inputs}
    with torch.no_grad():
        own = model.model.get_image_features(**images).pooler_output
        install(model, build_compressor("dominant", budget=16, keep_cls=False), layout="newline")
        try:
            family = installed(model).family
            encoded = family.encode(
                model, installed(model).encoder_compressor, images, installed(model).stats
            )
        finally:
            uninstall(model)
    assert [t.shape for t in encoded.tokens] == [t.shape for t in own]
    for mine, theirs in zip(encoded.tokens, own):
        torch.testing.assert_close(mine, theirs)


def test_reference_layout_puts_crop_patches_in_full_grid_order():
    """A 60x30 image: base view + 2 crops stacked vertically (2x1 grid), 4x4 patches each + CLS.
    Kept: crop 0 patches 5 and 16, crop 1 patches 1 and 6, both CLS, one merged token each."""
    model, _ = FAMILIES["llava_next"]()
    family = install(model, build_compressor("visionzip", dominant=3, contextual=1)).family
    uninstall(model)
    views = torch.arange(3 * 4, dtype=torch.float).view(3, 4, 1)  # view v, token k -> 4v + k
    positions = torch.tensor([[0, 1, 2, 9], [0, 5, 16, 9], [0, 1, 6, 9]])
    result = CompressionResult(tokens=views, positions=positions, kept_tokens=3)
    images = {"image_sizes": torch.tensor([[60, 30]])}
    laid = family.lay_out(model, views, result, slice(0, 3), images, 0).flatten().tolist()
    # base view as it is; then crop patches by global row: crop 0 row 1 col 0 (patch 5 -> k=1),
    # crop 0 row 3 col 3 (patch 16 -> k=2), crop 1 row 4 col 0 (patch 1 -> k=1), row 5 col 1
    # (patch 6 -> k=2); then the crops' CLS tokens; then their merged tokens
    assert laid == [0, 1, 2, 3, 5, 6, 9, 10, 4, 8, 7, 11]


@pytest.mark.parametrize("name", QWEN)
def test_every_merged_token_kept_through_the_strategy_changes_nothing(name):
    """Dominant at a budget of all 18 tokens keeps them in order at their own rotary positions:
    the logits equal the model's own (positions, decoding and the cut sequence are right)."""
    model, processor = FAMILIES[name]()
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 255, (84, 42, 3), dtype=np.uint8))
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what ?"}]}]
    inputs = processor(
        images=[image],
        text=[processor.apply_chat_template(conv, add_generation_prompt=True)],
        return_tensors="pt",
    )
    plain = generate(model, inputs)
    install(model, build_compressor("dominant", budget=18))
    try:
        patched = generate(model, inputs)
        assert installed(model).stats.visual_tokens == 18
    finally:
        uninstall(model)
    assert torch.equal(patched.sequences, plain.sequences)
    for a, b in zip(patched.logits, plain.logits):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", QWEN)
def test_kept_tokens_keep_their_grid_positions_and_the_text_after_keeps_its_own(name):
    model, processor = FAMILIES[name]()
    inputs = batch(name, processor)
    with torch.no_grad():
        full, _ = model.model.get_rope_index(
            inputs.input_ids,
            mm_token_type_ids=inputs.mm_token_type_ids,
            image_grid_thw=inputs.image_grid_thw,
            attention_mask=inputs.attention_mask,
        )
        install(model, build_compressor("visionzip", dominant=4, contextual=2))
        try:
            out = generate(model, inputs)
            assert out.sequences.shape[1] == inputs.input_ids.shape[1] + 3
            family, stats = installed(model).family, installed(model).stats
            images = {k: inputs[k] for k in family.image_inputs}
            encoded = family.encode(model, installed(model).encoder_compressor, images, stats)
        finally:
            uninstall(model)
    from vzexp.models.family import resize_image_runs

    ids, mask, source = resize_image_runs(
        inputs.input_ids, inputs.attention_mask, model.config.image_token_id, encoded.lengths, 0
    )
    cut, _ = family.positions(model, ids, mask, inputs.image_grid_thw, encoded.positions)
    image_id = model.config.image_token_id
    for row in range(ids.shape[0]):
        is_image = inputs.input_ids[row] == image_id
        first = int(is_image.nonzero()[0])
        cells = encoded.positions[row]
        valid = mask[row].bool()
        kept_image = ids[row] == image_id
        # the kept tokens sit at their cells' positions in the full layout
        torch.testing.assert_close(cut[1:, row][:, kept_image], full[:, row, first + cells])
        # every text token keeps the position it has with all tokens
        text_src = source[row][valid & ~kept_image]
        torch.testing.assert_close(cut[1:, row][:, valid & ~kept_image], full[:, row, text_src])


@pytest.mark.parametrize("name", QWEN)
def test_attention_received_equals_the_eager_attention_maps(name, monkeypatch):
    """The capture's per-token score = the attention the 4 patches of each merged token receive,
    checked against the softmax maps of transformers' own eager attention at that block."""
    import importlib

    module = importlib.import_module(f"transformers.models.{name}.modeling_{name}")
    model, processor = FAMILIES[name]()
    model.model.visual.config._attn_implementation = "eager"
    family = install(model, build_compressor("visionzip", budget=6)).family
    uninstall(model)
    inputs = batch(name, processor)
    visual = model.model.visual
    maps = []
    original = module.eager_attention_forward

    def recording(module_, q, k, v, attention_mask, **kw):
        out, weights = original(module_, q, k, v, attention_mask, **kw)
        if module_ is visual.blocks[1].attn:
            maps.append(weights.detach())
        return out, weights

    monkeypatch.setattr(module, "eager_attention_forward", recording)
    with torch.no_grad():
        _, received, _ = family.capture(model, inputs.pixel_values, inputs.image_grid_thw, -2)
    # per chunk (image or window): mean over heads and queries, in the block's token order
    per_patch = torch.cat([m[0].mean(dim=(0, 1)) for m in maps])
    per_token = per_patch.view(-1, 4).sum(dim=1)
    order = family.window_order(visual, inputs.image_grid_thw)
    if order is not None:
        per_token = per_token[torch.argsort(order)]
    torch.testing.assert_close(received.float(), per_token.float(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ANYRES)
def test_the_full_token_count_per_image_is_the_models_own(name):
    """What the placeholders are cut from: each image's count in the model's own layout (so the
    images of a video, whose placeholder runs touch, are told apart)."""
    model, processor = FAMILIES[name]()
    inputs = batch(name, processor)
    keys = ("pixel_values", "image_sizes", "batch_num_images")
    images = {k: inputs[k] for k in keys if k in inputs}
    family = install(model, build_compressor("visionzip", budget=6)).family
    uninstall(model)
    with torch.no_grad():
        own = model.model.get_image_features(**images).pooler_output
    assert family.full_lengths(model, images) == [len(t) for t in own]
    per_row = (inputs.input_ids == model.config.image_token_id).sum(1).tolist()
    assert per_row == [len(t) for t in own]


@pytest.mark.parametrize(
    ("family", "tower", "has_cls"),
    [
        ("llava", "clip_vision_model", True),
        ("llava", "dinov2", True),
        ("llava_onevision", "siglip_vision_model", False),
    ],
)
def test_a_family_reads_its_towers_shape_and_cls_token_from_the_config(family, tower, has_cls):
    from transformers import AutoConfig

    from vzexp.models.family import TowerShape, family_for_type

    config = AutoConfig.for_model(tower, image_size=56, patch_size=14, num_hidden_layers=3)
    assert family_for_type(family).tower_shape(config) == TowerShape(16, 3, has_cls)
    assert family_for_type(family).tower_shape(config, image_size=28) == TowerShape(4, 3, has_cls)


def test_qwen_towers_have_no_cls_and_a_grid_per_image():
    from transformers import AutoConfig

    from vzexp.models.family import TowerShape, family_for_type

    for name in ("qwen2_vl", "qwen2_5_vl"):
        vision = AutoConfig.for_model(name, vision_config={"depth": 3}).vision_config
        assert family_for_type(name).tower_shape(vision) == TowerShape(None, 3, False)
