"""LLM-side strategies (FastV, PyramidDrop, SparseVLM) on a tiny real LLaVA (5 Llama layers, GQA):
their scores against the layer's own eager attention, their prefill and their cached decoding
against a plain layer-by-layer loop written here, padding, and keep-everything = no change."""

from __future__ import annotations

import pytest
import torch

from vzexp.compress.fastv import FastV
from vzexp.compress.llm_side import PruneState, decoder_attention_scores
from vzexp.compress.pdrop import PyramidDrop
from vzexp.compress.registry import strategies
from vzexp.compress.sparsevlm import SparseVLM, dpc_knn_merge, rater_queries
from vzexp.errors import ConfigError
from vzexp.models.build import assemble
from vzexp.models.install import install, installed, uninstall

QUESTIONS = ["What color is the square?", "What color is the red square green blue yellow?"]


@pytest.fixture(scope="module")
def models(tiny_parts):
    """(sdpa model, processor, eager twin with the same weights): 5 Llama layers, GQA 4/2."""
    encoder, llm, words = tiny_parts
    llm = {**llm, "config": {**llm["config"], "num_hidden_layers": 5, "num_key_value_heads": 2}}
    model, processor = assemble(encoder, llm, words, seed=3)
    eager, _ = assemble(encoder, llm, words, seed=3, attn_implementation="eager")
    eager.load_state_dict(model.state_dict())
    return model, processor, eager


def prompts(processor, questions):
    return [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}],
            add_generation_prompt=True,
        )
        for q in questions
    ]


def inputs_for(processor, images, questions):
    return processor(
        images=images[: len(questions)],
        text=prompts(processor, questions),
        return_tensors="pt",
        padding=True,
    )


def llm_embeds(model, inputs) -> torch.Tensor:
    """The LLM's input embeddings (image features spliced in), from a plain forward."""
    seen = {}

    def grab(_m, _a, kwargs):
        seen.setdefault("embeds", kwargs["inputs_embeds"])

    handle = model.model.language_model.register_forward_pre_hook(grab, with_kwargs=True)
    with torch.no_grad():
        model(**inputs)
    handle.remove()
    return seen["embeds"]


def eager_scores(eager, layer_index, h, cos, sin, queries) -> torch.Tensor:
    """Mean over heads and queries of eager layer `layer_index`'s attention probabilities."""
    layer = eager.model.language_model.layers[layer_index]
    length = h.shape[1]
    causal = torch.full((length, length), -float("inf")).triu(1)[None, None]
    _, weights = layer.self_attn(
        hidden_states=layer.input_layernorm(h),
        position_embeddings=(cos, sin),
        attention_mask=causal,
    )
    return weights.mean(dim=1)[0, queries].mean(dim=0)


@torch.no_grad()
def manual_forward(model, eager, embeds, visual, points, compact, queries, fixed=None):
    """Batch 1, no padding: run the decoder layers one by one, pruning as `points` say
    (ranking by the eager twin's attention, or the kept prompt positions `fixed[layer]`).
    Returns (last-token logits, {prune layer: kept original positions})."""
    lm = model.model.language_model
    prompt_len = visual.shape[0]
    h, length = embeds, embeds.shape[1]
    index, pos = torch.arange(length), torch.arange(length)
    kept, scores = {}, {}
    for i, layer in enumerate(lm.layers):
        cos, sin = lm.rotary_emb(h, pos[None])
        for p in points:
            if p.score_layer == i and fixed is None:
                current = [int((index == q).nonzero()) for q in queries]
                scores[p.layer] = eager_scores(eager, i, h, cos, sin, current)
        point = next((p for p in points if p.layer == i), None)
        if point is not None:
            is_visual = torch.tensor([int(j) < prompt_len and bool(visual[j]) for j in index])
            if fixed is None:
                vis = is_visual.nonzero().flatten()
                top = scores[point.layer][vis].topk(point.keep).indices
                chosen = set(index[vis[top]].tolist())
            else:
                chosen = set(fixed[i])
            keep = torch.tensor([not v or int(j) in chosen for j, v in zip(index, is_visual)])
            h, index = h[:, keep], index[keep]
            pos = torch.arange(len(index)) if compact else pos[keep]
            kept[i] = sorted(chosen)
            cos, sin = lm.rotary_emb(h, pos[None])
        h = layer(h, attention_mask=None, position_embeddings=(cos, sin))
    return model.lm_head(lm.norm(h))[0, -1], kept


@torch.no_grad()
def manual_generate(model, eager, inputs, points, compact, queries, steps):
    """Greedy decoding without a cache, the prompt's kept sets fixed at prefill (as the
    KV-cache versions of the references behave); EOS barred, as min_new_tokens does."""
    embeds = llm_embeds(model, inputs)
    visual = inputs.input_ids[0] == model.config.image_token_id
    eos = model.generation_config.eos_token_id
    logits, kept = manual_forward(model, eager, embeds, visual, points, compact, queries)
    tokens = []
    for _ in range(steps):
        logits[eos] = -float("inf")
        tokens.append(int(logits.argmax()))
        new = model.model.language_model.embed_tokens(torch.tensor([tokens]))
        logits, _ = manual_forward(
            model, eager, torch.cat([embeds, new], 1), visual, points, compact, queries, kept
        )
    return tokens


def reference_setup(model, inputs, strategy):
    """Batch 1: (LLM input embeddings, visual mask, the strategy's plan, its query positions)."""
    embeds = llm_embeds(model, inputs)
    visual = inputs.input_ids[0] == model.config.image_token_id
    points = strategy.plan(int(visual.sum()), len(model.model.language_model.layers))
    state = PruneState(visual=visual[None], valid=torch.ones_like(visual)[None])
    queries = strategy.query_positions(state, embeds)[0][0].tolist()
    return embeds, visual, points, queries


STRATEGIES = {
    "fastv": lambda budget: FastV(budget=budget, k=2),
    "pdrop": lambda budget: PyramidDrop(budget=budget, layers=[1, 3]),
    "sparsevlm": lambda budget: SparseVLM(budget=budget, layers=[2, 4], recycle_ratio=0.0),
}


def test_scores_are_the_layers_own_attention(models, images):
    model, processor, eager = models
    inputs = inputs_for(processor, images, QUESTIONS[:1])
    embeds = llm_embeds(model, inputs)
    lm = model.model.language_model
    cos, sin = lm.rotary_emb(embeds, torch.arange(embeds.shape[1])[None])
    queries = torch.tensor([[embeds.shape[1] - 1, 5, 70]])
    valid = torch.ones(1, embeds.shape[1], dtype=torch.bool)
    ours = decoder_attention_scores(lm.layers[1], embeds, cos, sin, queries, valid, None)
    expected = eager_scores(eager, 1, embeds, cos, sin, queries[0])
    torch.testing.assert_close(ours[0], expected, rtol=1e-4, atol=1e-6)


def test_every_registered_llm_side_strategy_is_tested_here():
    assert sorted(STRATEGIES) == strategies(lambda cls: cls.kind == "llm")


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_prefill_matches_a_manual_layer_loop(models, images, name):
    model, processor, eager = models
    inputs = inputs_for(processor, images, QUESTIONS[:1])
    strategy = STRATEGIES[name](10)
    embeds, visual, points, queries = reference_setup(model, inputs, strategy)
    expected, _ = manual_forward(
        model, eager, embeds, visual, points, strategy.positions == "compact", queries
    )
    install(model, strategy)
    try:
        with torch.no_grad():
            logits = model(**inputs).logits
    finally:
        uninstall(model)
    assert logits.shape[1] == inputs.input_ids.shape[1] - (64 - 10)  # 64 visual -> 10 kept
    torch.testing.assert_close(logits[0, -1], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_cached_generation_matches_uncached_manual_decoding(models, images, name):
    model, processor, eager = models
    inputs = inputs_for(processor, images, QUESTIONS[:1])
    strategy = STRATEGIES[name](10)
    _, _, points, queries = reference_setup(model, inputs, strategy)
    expected = manual_generate(
        model, eager, inputs, points, strategy.positions == "compact", queries, steps=6
    )
    install(model, strategy)
    try:
        out = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    finally:
        uninstall(model)
    assert out[0, inputs.input_ids.shape[1] :].tolist() == expected


@pytest.mark.parametrize("name", [*STRATEGIES, "sparsevlm_recycling"])
def test_padded_batch_equals_each_prompt_alone(models, images, name):
    model, processor, _ = models
    make = STRATEGIES.get(name) or (lambda b: SparseVLM(budget=b, layers=[2, 4]))
    batch = inputs_for(processor, images, QUESTIONS)
    assert (batch.attention_mask == 0).any()  # the shorter prompt is left-padded
    install(model, make(12))
    try:
        out = model.generate(**batch, max_new_tokens=4, min_new_tokens=4, do_sample=False)
        for row, question in enumerate(QUESTIONS):
            alone = inputs_for(processor, [images[row]], [question])
            single = model.generate(**alone, max_new_tokens=4, min_new_tokens=4, do_sample=False)
            assert out[row, -4:].tolist() == single[0, -4:].tolist()
    finally:
        uninstall(model)


@pytest.mark.parametrize(
    "strategy",
    [
        FastV(budget=64, k=2),
        PyramidDrop(budget=64, layers=[1, 2, 3]),
        SparseVLM(budget=64, layers=[1, 3]),
    ],
)
def test_keeping_every_visual_token_changes_nothing(models, images, strategy):
    model, processor, _ = models
    batch = inputs_for(processor, images, QUESTIONS)
    with torch.no_grad():
        plain = model(**batch).logits[:, -1]
        plain_out = model.generate(**batch, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    install(model, strategy)
    try:
        with torch.no_grad():
            logits = model(**batch).logits[:, -1]
        out = model.generate(**batch, max_new_tokens=4, min_new_tokens=4, do_sample=False)
        assert installed(model).stats.llm_visual_tokens / installed(model).stats.images == 64
    finally:
        uninstall(model)
    torch.testing.assert_close(logits, plain, rtol=1e-4, atol=1e-5)
    assert torch.equal(out, plain_out)


def test_efficiency_figures_count_the_tokens_each_layer_sees(models, images):
    model, processor, _ = models
    inputs = inputs_for(processor, images, QUESTIONS[:1])
    install(model, PyramidDrop(budget=8, layers=[1, 3]))
    try:
        model.generate(**inputs, max_new_tokens=1, do_sample=False)
        stats = installed(model).stats
        # 64 visual tokens, stages of sqrt(8/64): layer 0: 64, layers 1-2: 22, layers 3-4: 8
        assert stats.visual_tokens == 64
        assert stats.llm_visual_tokens == pytest.approx((64 + 22 + 22 + 8 + 8) / 5)
    finally:
        uninstall(model)


def test_reference_plans():
    # PyramidDrop on LLaVA-1.5 (32 layers, 576 tokens, ratio 0.5): 288 / 144 / 72 at 8 / 16 / 24.
    plan = PyramidDrop(ratio=0.5).plan(576, 32)
    assert [(p.layer, p.keep, p.score_layer) for p in plan] == [
        (8, 288, 8),
        (16, 144, 16),
        (24, 72, 24),
    ]
    assert [p.keep for p in PyramidDrop(budget=72).plan(576, 32)] == [288, 144, 72]
    # FastV: K = 2, R = 50% dropped, ranked by layer 1's attention.
    (p,) = FastV(ratio=0.5).plan(576, 32)
    assert (p.layer, p.keep, p.score_layer) == (2, 288, 1)
    # SparseVLM: the outputs of layers 2, 6, 15 (before 3, 7, 16), the reference's 64 list.
    plan = SparseVLM(keep=[66, 30, 17]).plan(576, 32)
    assert [(p.layer, p.keep, p.score_layer) for p in plan] == [
        (3, 66, 2),
        (7, 30, 6),
        (16, 17, 15),
    ]
    assert [p.layer for p in SparseVLM(budget=24).plan(196, 4)] == [1, 2, 3]


def test_layer_out_of_range_is_one_clear_error(models):
    model, _, _ = models
    with pytest.raises(ConfigError, match=r"compressor.k=7 is not allowed: an LLM layer in 1..4"):
        install(model, FastV(budget=8, k=7))
    assert installed(model) is None


def test_raters_are_text_tokens_above_the_mean_score():
    # Visual rows v1 = (1, 0), v2 = (1, 0); text t1 = (2, 0), t2 = (0, 0), t3 = (1, 0).
    # softmax over text of v.t = softmax(2, 0, 1) -> t1 .665, t2 .090, t3 .245; mean .333 -> t1.
    embeds = torch.tensor(
        [[[9.0, 9.0], [1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 0.0], [1.0, 0.0]]]
    )
    visual = torch.tensor([[False, True, True, False, False, False]])
    queries, weights = rater_queries(embeds, visual, torch.ones_like(visual))
    assert queries.tolist() == [[3]] and weights.tolist() == [[1.0]]


def test_dpc_knn_merge_finds_two_clusters_and_averages_them():
    x = torch.tensor([[[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0], [5.1, 5.0]]])
    merged = dpc_knn_merge(x, 2)
    expected = {(round(a, 3), round(b, 3)) for a, b in [(0.1 / 3, 0.1 / 3), (5.05, 5.0)]}
    assert {(round(a, 3), round(b, 3)) for a, b in merged[0].tolist()} == expected
