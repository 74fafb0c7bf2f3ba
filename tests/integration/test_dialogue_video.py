"""Multi-turn dialogue with the KV cache reused (same answers as re-sending everything, fewer
tokens prefilled), and video as a sequence of frames, each compressed with the per-frame budget,
on every family."""

from __future__ import annotations

import numpy as np
import pytest
from family_fixtures import FAMILIES
from PIL import Image

from vzexp.compress.registry import build_compressor
from vzexp.data.shapes_dialogue import ShapesDialogues
from vzexp.engine.dialogue import TurnTemplate, converse
from vzexp.models.build import load_checkpoint
from vzexp.models.install import install, installed, uninstall
from vzexp.models.tokenizer import CHATML_TEMPLATE
from vzexp.paths import resource_dir


@pytest.fixture(scope="module")
def tiny_shapes():
    return load_checkpoint(str(resource_dir() / "tiny_shapes"))


def test_turn_template_pieces_for_llava_and_chatml(tiny_shapes):
    _, processor = tiny_shapes
    template = TurnTemplate(processor)
    tok = processor.tokenizer
    assert tok.convert_ids_to_tokens(template.end_of_turn) == ["</s>"]
    turn = tok.convert_ids_to_tokens(template.user_turn("how many objects are there ?"))
    assert turn == ["user", ":", "how", "many", "objects", "are", "there", "?", "assistant", ":"]
    assert template.close(tok.convert_tokens_to_ids(["red", "</s>"])) == []
    assert template.close(tok.convert_tokens_to_ids(["red"])) == template.end_of_turn

    class ChatML:  # the same pieces from a ChatML template (SmolLM2, Qwen)
        tokenizer = tok

        @staticmethod
        def apply_chat_template(messages, add_generation_prompt=False):
            from jinja2 import Template

            return Template(CHATML_TEMPLATE).render(
                messages=messages, add_generation_prompt=add_generation_prompt
            )

    chatml = TurnTemplate(ChatML())
    assert chatml.user_turn("x") != template.user_turn("x")


def test_a_reused_cache_gives_the_answers_of_re_sending_everything(tiny_shapes):
    model, processor = tiny_shapes
    dialogues = ShapesDialogues(size=4, turns=6)
    handle = install(model, build_compressor("visionzip", budget=24))
    try:
        for i in range(4):
            sample = dialogues[i]
            questions = [t["question"] for t in sample.turns]
            cached = converse(handle, processor, [sample.image], questions, 4)
            again = converse(handle, processor, [sample.image], questions, 4, reencode=True)
            assert [t.prediction for t in cached] == [t.prediction for t in again]
            # turn 1 is the same work; later turns prefill only their own tokens
            assert cached[0].new_tokens == again[0].new_tokens
            for k in range(1, len(questions)):
                assert cached[k].new_tokens < again[k].new_tokens
                assert again[k].new_tokens > again[k - 1].new_tokens  # the whole conversation
    finally:
        uninstall(model)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_dialogue_reuse_matches_re_sending_on_every_family(name):
    """Random weights: the answers are noise, but the cached and re-sent paths must agree token
    for token (Qwen: the rotary positions continue from the cut sequence)."""
    model, processor = FAMILIES[name]()
    rng = np.random.default_rng(2)
    image = Image.fromarray(rng.integers(0, 255, (56, 84, 3), dtype=np.uint8))
    questions = ["what color is the square ?", "what ?", "is the square red ?"]
    handle = install(model, build_compressor("visionzip", dominant=4, contextual=2))
    try:
        cached = converse(handle, processor, [image], questions, 3)
        again = converse(handle, processor, [image], questions, 3, reencode=True)
    finally:
        uninstall(model)
    assert [t.prediction for t in cached] == [t.prediction for t in again]
    assert cached[2].new_tokens < again[2].new_tokens


# per-frame tokens with visionzip 4 + 2: LLaVA-NeXT tiles each 56x84 frame (2x2 crops + base),
# OneVision gives each of a sample's several images a single view (its own multi-image rule)
FRAME_TOKENS = {"llava_next": 5 * 6, "llava_onevision": 6, "qwen2_vl": 6, "qwen2_5_vl": 6}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_video_frames_are_images_each_with_the_per_frame_budget(name):
    from vzexp.data.sample import Sample
    from vzexp.engine.evaluate import Collator

    model, processor = FAMILIES[name]()
    rng = np.random.default_rng(3)
    frames = [Image.fromarray(rng.integers(0, 255, (56, 84, 3), dtype=np.uint8)) for _ in range(3)]
    samples = [
        Sample(id="v0", image=frames, question="where does the square move ?", answer="left"),
        Sample(id="v1", image=frames[:2], question="what ?", answer="red"),
    ]
    batch = Collator(processor)(samples)
    install(model, build_compressor("visionzip", dominant=4, contextual=2))
    try:
        model.generate(**batch["inputs"], max_new_tokens=2, do_sample=False)
        lengths = installed(model).stats.lengths
    finally:
        uninstall(model)
    assert batch["images_per_sample"] == [3, 2]
    assert lengths == [FRAME_TOKENS[name]] * 5
