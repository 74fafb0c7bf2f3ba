"""The shipped tiny models (the default, and the one also trained at VisionZip's budget): they
load through the standard checkpoint path from inside the package, and answer the shapes test split
well above chance with all tokens and with VisionZip."""

from __future__ import annotations

import pytest
import torch

from vzexp.paths import resource_dir

# Floors below the measured figures on 800 questions (experiments/build_tiny/: tiny_shapes all
# tokens 0.861, VisionZip at 24 tokens 0.621; tiny_shapes_budget 0.846 and 0.772) by about 3
# standard errors of these 160 questions, and above chance (about 0.35 for this mix of types).
FLOORS = {"tiny_shapes": (0.78, 0.50), "tiny_shapes_budget": (0.76, 0.68)}


def accuracy(model, processor, samples) -> float:
    from vzexp.data.scoring import exact_match
    from vzexp.engine.evaluate import Collator

    batch = Collator(processor)(samples)
    prompt_len = batch["inputs"]["input_ids"].shape[1]
    with torch.no_grad():
        out = model.generate(**batch["inputs"], max_new_tokens=4, do_sample=False)
    texts = processor.tokenizer.batch_decode(out[:, prompt_len:], skip_special_tokens=True)
    return sum(exact_match(t, s.answer) for t, s in zip(texts, samples, strict=True)) / len(samples)


@pytest.fixture(scope="module", params=sorted(FLOORS))
def shipped(request):
    from vzexp.models.build import load_checkpoint

    model, processor = load_checkpoint(str(resource_dir() / request.param))
    return model, processor, FLOORS[request.param]


@pytest.fixture(scope="module")
def samples():
    from vzexp.data.shapes import ShapesQA

    data = ShapesQA(split="test", size=160, seed=0)  # 20 questions of each of the 8 types
    return [data[i] for i in range(len(data))]


def test_the_model_cards_and_weights_ship_in_the_package():
    total = 0
    for name in FLOORS:
        shipped = resource_dir() / name
        assert (shipped / "README.md").is_file() and (shipped / "model.safetensors").is_file()
        total += sum(f.stat().st_size for f in shipped.iterdir())
    assert total <= 20 * 2**20  # all told


def test_all_tokens_above_the_floor(shipped, samples):
    from vzexp.compress.none import NoCompression
    from vzexp.models.install import install, uninstall

    model, processor, (floor, _) = shipped
    install(model, NoCompression())
    try:
        assert accuracy(model, processor, samples) >= floor
    finally:
        uninstall(model)


def test_visionzip_at_one_eighth_above_the_floor(shipped, samples):
    from vzexp.compress.visionzip import VisionZip
    from vzexp.models.install import install, installed, uninstall

    model, processor, (_, floor) = shipped
    install(model, VisionZip(budget=24))
    try:
        assert installed(model).tokens_per_image == 24
        assert accuracy(model, processor, samples) >= floor
    finally:
        uninstall(model)
