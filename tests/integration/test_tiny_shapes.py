"""The shipped default model: it loads through the standard checkpoint path from inside the
package, and answers the shapes test split well above chance with all tokens and with VisionZip."""

from __future__ import annotations

import pytest
import torch

from vzexp.paths import resource_dir

SHIPPED = resource_dir() / "tiny_shapes"
# Floors below the measured figures on 800 questions (all tokens 0.861, VisionZip at 24 tokens
# 0.621; experiments/tiny_default) by about 3 standard errors of these 160 questions, and above
# chance (about 0.35 for this mix of question types).
FLOOR_ALL_TOKENS = 0.78
FLOOR_VISIONZIP = 0.50


def accuracy(model, processor, samples) -> float:
    from vzexp.data.scoring import exact_match
    from vzexp.engine.evaluate import Collator

    batch = Collator(processor)(samples)
    prompt_len = batch["inputs"]["input_ids"].shape[1]
    with torch.no_grad():
        out = model.generate(**batch["inputs"], max_new_tokens=4, do_sample=False)
    texts = processor.tokenizer.batch_decode(out[:, prompt_len:], skip_special_tokens=True)
    return sum(exact_match(t, s.answer) for t, s in zip(texts, samples, strict=True)) / len(samples)


@pytest.fixture(scope="module")
def shipped():
    from vzexp.models.build import load_checkpoint

    return load_checkpoint(str(SHIPPED))


@pytest.fixture(scope="module")
def samples():
    from vzexp.data.shapes import ShapesQA

    data = ShapesQA(split="test", size=160, seed=0)  # 20 questions of each of the 8 types
    return [data[i] for i in range(len(data))]


def test_the_model_card_and_weights_ship_in_the_package():
    assert (SHIPPED / "README.md").is_file()
    weights = SHIPPED / "model.safetensors"
    assert weights.is_file()
    total = sum(f.stat().st_size for f in SHIPPED.iterdir())
    assert total <= 20 * 2**20


def test_all_tokens_above_the_floor(shipped, samples):
    from vzexp.compress.none import NoCompression
    from vzexp.models.llava import install, uninstall

    model, processor = shipped
    install(model, NoCompression())
    try:
        assert accuracy(model, processor, samples) >= FLOOR_ALL_TOKENS
    finally:
        uninstall(model)


def test_visionzip_at_one_eighth_above_the_floor(shipped, samples):
    from vzexp.compress.visionzip import VisionZip
    from vzexp.models.llava import install, uninstall

    model, processor = shipped
    install(model, VisionZip(budget=24))
    try:
        assert model.vzexp_tokens_per_image == 24
        assert accuracy(model, processor, samples) >= FLOOR_VISIONZIP
    finally:
        uninstall(model)
