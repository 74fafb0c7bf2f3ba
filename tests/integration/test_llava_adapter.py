"""The LLaVA adapter on a tiny real LlavaForConditionalGeneration: splice, generate, one-liner."""

from __future__ import annotations

import pytest
import torch

from vzexp import compress_vision, restore, visionzip
from vzexp.compress import NoCompression, VisionZip
from vzexp.models.build import load_checkpoint
from vzexp.models.family import resize_image_runs
from vzexp.models.install import install, installed, uninstall


def prompt(processor, question="What color is the square?"):
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(conv, add_generation_prompt=True)


def test_none_matches_the_models_own_feature_path(tiny_llava, images):
    model, processor = tiny_llava
    inputs = processor(
        images=images[:2], text=[prompt(processor)] * 2, return_tensors="pt", padding=True
    )
    with torch.no_grad():
        plain = model(**inputs).logits
        install(model, NoCompression())
        try:
            patched = model(**inputs).logits
        finally:
            uninstall(model)
    torch.testing.assert_close(patched, plain)


def test_visionzip_one_liner_generates_with_fewer_tokens(tiny_llava, images):
    model, processor = tiny_llava
    inputs = processor(images=images[:1], text=[prompt(processor)], return_tensors="pt")
    assert (inputs.input_ids == model.config.image_token_id).sum() == 64
    visionzip(model, dominant=10, contextual=3)
    try:
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
        assert installed(model).stats.visual_tokens == 13
        # The caller's prompt comes back unchanged, followed by exactly the new tokens.
        assert torch.equal(out[:, : inputs.input_ids.shape[1]], inputs.input_ids)
        assert out.shape[1] == inputs.input_ids.shape[1] + 3
    finally:
        restore(model)
    assert installed(model) is None and "generate" not in vars(model)


def test_generation_uses_the_compressed_features(tiny_llava, images):
    """Prefill logits after the one-liner equal a manual splice of compress_vision's tokens."""
    model, processor = tiny_llava
    inputs = processor(images=images[:1], text=[prompt(processor)], return_tensors="pt")
    with torch.no_grad():
        result = compress_vision(
            model.model.vision_tower, inputs.pixel_values, dominant=10, contextual=3
        )
        projected = model.model.multi_modal_projector(result.tokens)
        ids, mask, _ = resize_image_runs(
            inputs.input_ids, inputs.attention_mask, model.config.image_token_id, [13], 0
        )
        embeds = model.get_input_embeddings()(ids)
        embeds[ids == model.config.image_token_id] = projected.reshape(-1, projected.shape[-1])
        manual = model(inputs_embeds=embeds, attention_mask=mask).logits[:, -1]
        visionzip(model, dominant=10, contextual=3)
        try:
            out = model.generate(
                **inputs,
                max_new_tokens=1,
                do_sample=False,
                output_logits=True,
                return_dict_in_generate=True,
            )
        finally:
            restore(model)
    torch.testing.assert_close(out.logits[0], manual, rtol=1e-4, atol=1e-5)


def test_batched_left_padded_generation_equals_one_by_one(tiny_llava, images):
    model, processor = tiny_llava
    texts = [prompt(processor, "What color is the square?"), prompt(processor, "color?")]
    visionzip(model, dominant=8, contextual=2)
    try:
        batch = processor(images=images[:2], text=texts, return_tensors="pt", padding=True)
        assert batch.attention_mask[1, 0] == 0  # the shorter prompt is left-padded
        together = model.generate(**batch, max_new_tokens=4, do_sample=False)
        for i in range(2):
            single = processor(images=images[i : i + 1], text=texts[i : i + 1], return_tensors="pt")
            alone = model.generate(**single, max_new_tokens=4, do_sample=False)
            assert torch.equal(together[i, -4:], alone[0, -4:])
    finally:
        restore(model)


def test_resized_image_runs_are_left_padded_again():
    ids = torch.tensor([[0, 0, 5, 9, 9, 9, 9, 6], [5, 9, 9, 9, 9, 7, 7, 6]])
    mask = (ids != 0).long()
    out, out_mask, source = resize_image_runs(ids, mask, image_token_id=9, lengths=[2, 2], pad_id=0)
    assert out.tolist() == [[0, 0, 5, 9, 9, 6], [5, 9, 9, 7, 7, 6]]
    assert out_mask.tolist() == [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
    assert source.tolist() == [[-1, -1, 2, 3, 4, 7], [0, 1, 2, 5, 6, 7]]


def test_install_stores_nothing_on_the_model_and_uninstall_restores_it(tiny_llava, images):
    """The handle holds the run's state; the model gains only the patched methods, and after
    uninstall runs its own forward and generate again, with the same outputs."""
    model, processor = tiny_llava
    inputs = processor(images=images[:1], text=[prompt(processor)], return_tensors="pt")

    def attributes(m) -> set[str]:
        # transformers flags a module the first time it installs its own output-capturing hooks
        # (once per module, whichever call comes first): not state of the run
        return {n for n in vars(m) if n != "_output_capturing_hooks_installed"}

    own = {m: attributes(m) for m in model.modules()}
    with torch.no_grad():
        logits = model(**inputs).logits
        answer = model.generate(**inputs, max_new_tokens=3, do_sample=False)
        handle = install(model, VisionZip(dominant=4, contextual=2))
        model.generate(**inputs, max_new_tokens=3, do_sample=False)
        added = {
            (type(m).__name__, name) for m in model.modules() for name in attributes(m) - own[m]
        }
        assert added == {
            ("LlavaForConditionalGeneration", "generate"),
            ("LlavaModel", "get_image_features"),
        }
        assert not [n for m in model.modules() for n in vars(m) if n.startswith("vzexp")]
        assert installed(model) is handle and handle.tokens_per_image == 6
        assert handle.stats.visual_tokens == 6
        assert handle.last_sequences.shape[1] == answer.shape[1] - 64 + 6
        uninstall(handle)
        assert {m: attributes(m) for m in model.modules()} == own
        assert installed(model) is None
        assert torch.equal(model(**inputs).logits, logits)
        assert torch.equal(model.generate(**inputs, max_new_tokens=3, do_sample=False), answer)


def test_checkpoint_directory_loads_through_the_standard_classes(tiny_checkpoint, images):
    model, processor = load_checkpoint(str(tiny_checkpoint))
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    visionzip(model, dominant=6, contextual=2)
    inputs = processor(images=images[:1], text=[prompt(processor)], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert out.shape[1] == inputs.input_ids.shape[1] + 2
    assert installed(model).tokens_per_image == 8


@pytest.mark.parametrize("bad", ["missing", "not-llava"])
def test_checkpoint_errors_name_the_key(tmp_path, bad):
    from vzexp.errors import MissingPathError

    path = tmp_path / "nope"
    if bad == "not-llava":
        path.mkdir()
        (path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(MissingPathError, match="model.path"):
        load_checkpoint(str(path))


@pytest.mark.parametrize("load", ["assemble", "checkpoint"])
def test_frozen_lm_head_gets_a_contiguous_input_in_generate(
    load, tiny_parts, tiny_checkpoint, images
):
    """generate() slices the last position for the LM head; a frozen head (every model after
    task=tune) would then run B expanded copies of its weight (fold_lm_head_input)."""
    from vzexp.models.build import assemble

    if load == "assemble":
        model, processor = assemble(*tiny_parts, seed=0)
    else:
        model, processor = load_checkpoint(str(tiny_checkpoint))
    model.requires_grad_(False)
    seen = []
    model.lm_head.register_forward_pre_hook(lambda _m, args: seen.append(args[0].is_contiguous()))
    text = [prompt(processor)] * 2
    inputs = processor(images=images[:2], text=text, return_tensors="pt", padding=True)
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert seen and all(seen)  # the first call gets the (B, 1, d) slice of the prompt's states

    model.lm_head._forward_pre_hooks.clear()  # without the fix: the slice, the same tokens
    seen.clear()
    model.lm_head.register_forward_pre_hook(lambda _m, args: seen.append(args[0].is_contiguous()))
    assert torch.equal(model.generate(**inputs, max_new_tokens=3, do_sample=False), out)
    assert seen[0] is False
