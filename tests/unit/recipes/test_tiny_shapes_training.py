"""The tiny_shapes recipe's building blocks: training sequences match evaluation prompts token for
token, only answers are learned, pixels match the image processor, and each stage's objective
really learns (loss falls on a fixed batch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from vzexp_testing import loss_with_compressor

from tests.conftest import TINY_ENCODER, TINY_LLM
from vzexp.data.conversation import IGNORE_INDEX, ConversationEncoder, encode_conversation
from vzexp.engine.training import StepModule
from vzexp.recipes.tiny_shapes.data import Collate, normalize_pixels
from vzexp.recipes.tiny_shapes.objectives import LlavaStage, TowerPretrainer

WORDS = (
    "what color is the square shape red green blue how many objects are there 1 2 3 small".split()
)


@pytest.fixture(scope="module")
def llava():
    from vzexp.models.build import assemble

    return assemble(TINY_ENCODER, TINY_LLM, WORDS, seed=0)


def test_single_turn_matches_the_evaluation_prompt(llava):
    model, processor = llava
    image = Image.new("RGB", (56, 56), (10, 20, 30))
    ids, labels = encode_conversation(processor, [("What color is the square?", "red")], 64)
    prompt = processor.apply_chat_template(
        [
            {
                "role": "user",
                "content": [
                    {"type": "image"},
                    {"type": "text", "text": "What color is the square?"},
                ],
            }
        ],
        add_generation_prompt=True,
    )
    expected = processor(images=[image], text=[prompt], return_tensors="pt").input_ids[0].tolist()
    assert ids[: len(expected)] == expected  # training sees exactly what evaluation feeds
    learned = [t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE_INDEX]
    assert processor.tokenizer.convert_ids_to_tokens(learned) == ["red", "</s>"]
    assert ids.count(model.config.image_token_id) == 64


def test_multi_turn_learns_every_answer_and_nothing_else(llava):
    _, processor = llava
    turns = [("What color is the square?", "green"), ("How many objects are there?", "3")]
    ids, labels = encode_conversation(processor, turns, 64)
    tokens = processor.tokenizer.convert_ids_to_tokens(
        [t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE_INDEX]
    )
    assert tokens == ["green", "</s>", "3", "</s>"]
    assert len(ids) == len(labels)


def test_cached_encoder_equals_the_full_rendering(llava):
    _, processor = llava
    encode = ConversationEncoder(processor, 64)
    conversations = [
        [("What color is the square?", "red"), ("How many objects are there?", "2")],
        [("How many objects are there?", "3"), ("What color is the square?", "blue")],
        [("What color is the square?", "green")],
    ]
    for turns in conversations:
        for with_image in (True, False):
            assert encode(turns, with_image) == encode_conversation(
                processor, turns, 64, with_image
            )


def test_cached_encoder_rejects_templates_with_dependent_turns(llava):
    import copy

    _, processor = llava
    numbered = copy.copy(processor)
    # a template that marks messages after the fourth: a turn's text depends on how many came before
    numbered.chat_template = (
        "{% for m in messages %}{% if loop.index > 4 %}green {% endif %}{{ m['role'] }}: "
        "{% for p in m['content'] %}{% if p['type'] == 'text' %}{{ p['text'] }}{% endif %}"
        "{% endfor %} {% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
    )
    with pytest.raises(ValueError, match="independently"):
        ConversationEncoder(numbered, 4)([("What color is the square?", "red")] * 3, False)


def test_text_only_conversation_has_no_image_positions(llava):
    model, processor = llava
    ids, labels = encode_conversation(
        processor, [("How many objects are there?", "2")], 64, with_image=False
    )
    assert model.config.image_token_id not in ids
    assert processor.tokenizer.convert_ids_to_tokens(ids)[:2] == ["user", ":"]


def test_normalized_pixels_equal_the_image_processor(llava):
    _, processor = llava
    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 256, (2, 56, 56, 3), dtype=np.uint8)
    expected = processor.image_processor(
        images=[Image.fromarray(a) for a in arrays], return_tensors="pt"
    )["pixel_values"]
    ours = normalize_pixels(
        torch.from_numpy(arrays).permute(0, 3, 1, 2),
        processor.image_processor.image_mean,
        processor.image_processor.image_std,
    )
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)


def test_patch_labels_follow_the_objects():
    from vzexp.data.shapes import Background, Scene, ShapeObject
    from vzexp.recipes.tiny_shapes.data import patch_labels

    background = Background(
        base=(128, 128, 128), texture="noise", amplitude=0, period=8, angle=0, seed=0
    )
    # a 16-px red square exactly on patches (1..2, 1..2) of an 8x8 grid of 8-px patches (64 px)
    square = ShapeObject(color="red", shape="square", size=16, x=16.0, y=16.0)
    # a blue square drawn later, overlapping the red one's bottom-right patch
    blue = ShapeObject(color="blue", shape="square", size=8, x=20.0, y=20.0)
    color, shape = patch_labels(
        Scene(objects=(square, blue), background=background, image_size=64),
        8,
        {"red": 1, "blue": 3},
        {"square": 2},
    )
    color = color.view(8, 8)
    assert color[1, 1] == 1 and color[1, 2] == 1 and color[2, 1] == 1
    assert color[2, 2] == 3  # the later object wins where it covers the patch
    assert color.count_nonzero() == 4 and (shape.view(8, 8)[1:3, 1:3] == 2).all()


def _steps(objective, batch, n: int, **schedule) -> list[float]:
    """n optimiser steps on one batch, as the recipe trains (StepModule's AdamW and schedule)."""
    module = StepModule(objective, weight_decay=0.0, warmup_steps=1, **schedule)
    [optimizer], _ = module.configure_optimizers()
    module.log = module.log_dict = lambda *a, **k: None  # outside a Trainer there is nowhere to log
    losses = []
    for _ in range(n):
        loss = module.training_step(batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_tower_pretrainer_learns_presence_and_count(llava):
    model, processor = llava
    torch.manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 56, 56), dtype=torch.uint8)
    batch = {
        "pixel_values": normalize_pixels(
            images, processor.image_processor.image_mean, processor.image_processor.image_std
        ),
        "present": (torch.rand(8, 6) > 0.5).float(),
        "count": torch.randint(0, 4, (8,)),
        "patch_color": torch.randint(0, 7, (8, 64)),
        "patch_shape": torch.randint(0, 5, (8, 64)),
    }
    import copy

    tower = copy.deepcopy(model.model.vision_tower)
    objective = TowerPretrainer(tower, 6, 4, 6, 4)
    losses = _steps(objective, batch, 30, lr=3e-3, total_steps=1000)
    assert losses[-1] < 0.5 * losses[0]


def test_llava_stage_trains_only_the_listed_parts(llava):
    import copy

    model, processor = llava
    model = copy.deepcopy(model)
    collate = Collate(
        processor.tokenizer.pad_token_id,
        processor.image_processor.image_mean,
        processor.image_processor.image_std,
    )
    items = []
    for answer in ("red", "green", "blue", "red"):
        ids, labels = encode_conversation(processor, [("What color is the square?", answer)], 64)
        items.append(
            {
                "input_ids": torch.tensor(ids),
                "labels": torch.tensor(labels),
                "images": torch.randint(0, 256, (3, 56, 56), dtype=torch.uint8),
            }
        )
    batch = collate(items)
    tower_before = copy.deepcopy(model.model.vision_tower.state_dict())
    llm_before = copy.deepcopy(model.model.language_model.state_dict())
    objective = LlavaStage(model, "align", ("projector",))
    losses = _steps(objective, batch, 15, lr=1e-2, total_steps=100)
    assert losses[-1] < losses[0]
    for name, value in model.model.vision_tower.state_dict().items():
        torch.testing.assert_close(value, tower_before[name])
    for name, value in model.model.language_model.state_dict().items():
        torch.testing.assert_close(value, llm_before[name])
    with pytest.raises(ValueError, match="trainable parts"):
        LlavaStage(model, "x", ("tower",))


def test_qa_conversations_ask_each_type_at_most_once_and_vary_by_epoch(llava):
    from vzexp.data.shapes import QA
    from vzexp.recipes.tiny_shapes.data import Conversations, RenderedScenes

    _, processor = llava
    qas = [
        QA("exist_random", "Is there a red square in the image?", "yes"),
        QA("exist_random", "Is there a blue square in the image?", "no"),
        QA("color", "What color is the square?", "red"),
        QA("count", "How many objects are there?", "1"),
    ]
    scenes = RenderedScenes(
        torch.zeros(1, 3, 56, 56, dtype=torch.uint8), [None], ["red square ."], [qas]
    )
    data = Conversations(scenes, processor, 64, "qa", turns=10, seed=0)
    seen = set()
    for epoch in range(12):
        data.epoch = epoch
        turns = data._turns(0)
        types = [next(q.type for q in qas if q.question == t[0]) for t in turns]
        assert sorted(types) == ["color", "count", "exist_random"]
        seen.add(tuple(turns))
    assert len(seen) > 1  # the yes/no pick and the order change between epochs


def test_text_conversations_put_the_caption_in_the_image_slot(llava):
    from vzexp.data.shapes import QA
    from vzexp.recipes.tiny_shapes.data import Conversations, RenderedScenes

    _, processor = llava
    qas = [QA("color", "What color is the square?", "red")]
    scenes = RenderedScenes(
        torch.zeros(1, 3, 56, 56, dtype=torch.uint8), [None], ["red square ."], [qas]
    )
    text = Conversations(scenes, processor, 64, "text", turns=10, seed=0)[0]
    image = Conversations(scenes, processor, 64, "qa", turns=10, seed=0)[0]
    assert "images" not in text
    tokens = processor.tokenizer.convert_ids_to_tokens(text["input_ids"].tolist())
    slot = image["input_ids"].tolist().index(processor.tokenizer.convert_tokens_to_ids("<image>"))
    assert tokens[slot : slot + 3] == ["red", "square", "."]  # where the 64 visual tokens were
    # the same conversation around the slot, and only the answer is learned
    assert text["input_ids"][:slot].tolist() == image["input_ids"][:slot].tolist()
    assert text["input_ids"][slot + 3 :].tolist() == image["input_ids"][slot + 64 :].tolist()
    learned = text["labels"][text["labels"] != -100].tolist()
    assert learned == image["labels"][image["labels"] != -100].tolist()
    assert processor.tokenizer.convert_ids_to_tokens(learned)[0] == "red"


def _two_squares():
    from vzexp.data.shapes import Background, Scene, ShapeObject

    background = Background(
        base=(128, 128, 128), texture="noise", amplitude=0, period=8, angle=0, seed=0
    )
    # 56 px, 8x8 grid of 7-px patches: a big red square centred in patch (row 5, col 1) and a
    # small blue one in patch (row 0, col 6)
    return Scene(
        objects=(
            ShapeObject(color="red", shape="square", size=20, x=10.0, y=38.0),
            ShapeObject(color="blue", shape="square", size=5, x=45.0, y=3.0),
        ),
        background=background,
        image_size=56,
    )


def test_object_slot_lists_each_object_at_its_centre_patch(llava):
    from vzexp.recipes.tiny_shapes.data import object_slot

    _, processor = llava
    word = processor.tokenizer.convert_tokens_to_ids
    words, patches = object_slot(_two_squares(), word, 64)
    assert patches == [6, 41]  # patch order: the blue one (0*8 + 6) first, then 5*8 + 1
    assert words == [
        [word("blue"), word("square"), word("small")],
        [word("red"), word("square"), -1],
    ]


def test_object_embeddings_sum_the_words_in_the_slot_only():
    from vzexp.recipes.tiny_shapes.objectives import object_embeddings

    embed = torch.nn.Embedding(10, 4)
    image = 9
    ids = torch.tensor([[1, 9, 9, 2], [3, 9, 4, 0]])  # row 1: one object, then padding
    words = torch.tensor([[[5, 6, -1], [7, 8, 5]], [[6, 7, -1], [-1, -1, -1]]])
    out = object_embeddings(embed, ids, words, image)
    w = embed.weight
    torch.testing.assert_close(out[0, 1], w[5] + w[6])
    torch.testing.assert_close(out[0, 2], w[7] + w[8] + w[5])
    torch.testing.assert_close(out[1, 1], w[6] + w[7])
    for row, col in ((0, 0), (0, 3), (1, 0), (1, 2), (1, 3)):
        torch.testing.assert_close(out[row, col], w[ids[row, col]])


def test_object_conversations_keep_the_text_where_it_follows_the_visual_tokens(llava):
    from vzexp.data.shapes import QA
    from vzexp.recipes.tiny_shapes.data import Conversations, RenderedScenes

    model, processor = llava
    qas = [QA("color", "What color is the square?", "red")]
    scenes = RenderedScenes(
        torch.zeros(1, 3, 56, 56, dtype=torch.uint8), [_two_squares()], ["x"], [qas]
    )
    objects = Conversations(scenes, processor, 64, "objects", turns=10, seed=0)[0]
    image = Conversations(scenes, processor, 64, "qa", turns=10, seed=0)[0]
    ids, positions = objects["input_ids"].tolist(), objects["position_ids"].tolist()
    slot = image["input_ids"].tolist().index(model.config.image_token_id)
    assert ids[slot : slot + 2] == [model.config.image_token_id] * 2
    assert positions[slot : slot + 2] == [slot + 6, slot + 41]  # where those patches' tokens sit
    # before and after the slot: the qa conversation's tokens at the qa conversation's positions
    assert ids[:slot] == image["input_ids"][:slot].tolist() and positions[:slot] == list(
        range(slot)
    )
    after = image["input_ids"][slot + 64 :].tolist()
    assert ids[slot + 2 :] == after
    assert positions[slot + 2 :] == list(range(slot + 64, slot + 64 + len(after)))
    learned = objects["labels"][objects["labels"] != -100].tolist()
    assert learned == image["labels"][image["labels"] != -100].tolist()


def test_llava_stage_learns_from_object_slots(llava):
    import copy

    from vzexp.data.shapes import QA
    from vzexp.recipes.tiny_shapes.data import Conversations, RenderedScenes

    model, processor = llava
    model = copy.deepcopy(model)
    qas = [QA("color", "What color is the square?", "red")]
    scenes = RenderedScenes(
        torch.zeros(2, 3, 56, 56, dtype=torch.uint8), [_two_squares()] * 2, ["x"] * 2, [qas] * 2
    )
    data = Conversations(scenes, processor, 64, "objects", turns=10, seed=0)
    collate = Collate(processor.tokenizer.pad_token_id, [0.5] * 3, [0.5] * 3)
    batch = collate([data[0], data[1]])
    assert batch["object_words"].shape == (2, 2, 3) and "pixel_values" not in batch
    objective = LlavaStage(model, "language", ("llm",))
    losses = _steps(objective, batch, 10, lr=1e-2, total_steps=100)
    assert losses[-1] < 0.5 * losses[0]


def test_turn_attention_mask_by_hand():
    from vzexp.data.isolated_turns import turn_attention_mask

    # prefix of 2, turn 1 of 2 tokens, turn 2 of 1 token, one padding position
    mask = turn_attention_mask(torch.tensor([[0, 0, 1, 1, 2, -1]]))[0, 0].int()
    assert mask.tolist() == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 0, 0, 1, 0],  # turn 2 sees the prefix and itself, not turn 1
        [0, 0, 0, 0, 0, 1],  # padding: itself only
    ]


@pytest.mark.parametrize("mode", ["qa", "objects"])
def test_isolated_turns_score_each_turn_as_if_asked_alone(llava, mode):
    """The logits of every turn in one isolated sequence equal those of the turn alone."""
    from vzexp.data.shapes import QA
    from vzexp.recipes.tiny_shapes.data import Conversations, RenderedScenes

    model, processor = llava
    qas = [
        QA("color", "What color is the square?", "red"),
        QA("count", "How many objects are there?", "2"),
        QA("exist_random", "Is there a blue square in the image?", "yes"),
    ]
    torch.manual_seed(0)
    images = torch.randint(0, 256, (1, 3, 56, 56), dtype=torch.uint8)
    scenes = RenderedScenes(images, [_two_squares()], ["x"], [qas])
    collate = Collate(processor.tokenizer.pad_token_id, [0.5] * 3, [0.5] * 3)
    data = Conversations(scenes, processor, 64, mode, turns=10, seed=0, isolate=True)
    turns = data._turns(0)
    objective = LlavaStage(model, "x", ("llm",))

    def answer_logits(batch):
        captured = {}
        handle = model.lm_head.register_forward_hook(lambda m, i, o: captured.update(out=o))
        with torch.no_grad():
            objective(batch)
        handle.remove()
        learned = batch["labels"][0] != IGNORE_INDEX
        return captured["out"][0, learned.roll(-1)]  # the logits that predict the answers

    together = answer_logits(collate([data[0]]))
    alone = []
    for turn in turns:
        data.turns, data._turns = 1, lambda i, turn=turn: [turn]
        alone.append(answer_logits(collate([data[0]])))
    torch.testing.assert_close(together, torch.cat(alone), rtol=1e-4, atol=1e-5)
    assert len(together) == 2 * len(turns)  # each answer word and its end-of-turn token


def test_a_budget_batch_sees_the_image_as_evaluation_with_the_compressor_does(llava):
    """The instruct stage's budget batches: the loss equals transformers' own forward with
    VisionZip installed (what evaluation at that budget runs), placeholders and all."""
    from vzexp.compress.visionzip import VisionZip
    from vzexp.data.shapes import QA
    from vzexp.models.install import tokens_per_image
    from vzexp.recipes.tiny_shapes.data import Conversations, RenderedScenes

    model, processor = llava
    compressor = VisionZip(budget=8)
    kept = tokens_per_image(model, compressor)
    qas = [
        QA("color", "What color is the square?", "red"),
        QA("count", "How many objects are there?", "2"),
    ]
    torch.manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 56, 56), dtype=torch.uint8)
    scenes = RenderedScenes(images, [_two_squares()] * 2, ["x"] * 2, [qas] * 2)
    data = Conversations(scenes, processor, 64, "qa", turns=10, seed=0, budgets=(kept,))
    collate = Collate(processor.tokenizer.pad_token_id, [0.5] * 3, [0.5] * 3)
    batch = collate([data[(0, kept)], data[(1, kept)]])
    slots = (batch["input_ids"] == model.config.image_token_id).sum(1)
    assert batch["visual_tokens"] == kept and slots.tolist() == [kept, kept]
    assert "visual_tokens" not in collate([data[0]])  # plain keys: all 64 patches
    objective = LlavaStage(model, "instruct", ("projector", "llm"), {kept: compressor})
    with torch.no_grad():
        loss, logged = objective(batch)
    assert list(logged) == ["instruct/loss_at_budget"]
    reference = loss_with_compressor(model, compressor, batch)
    torch.testing.assert_close(loss, reference)


def test_budget_batches_are_seeded_whole_batches_covering_every_scene():
    from vzexp.recipes.tiny_shapes.budget_batches import BudgetBatches

    def draw(sampler, epochs=3):
        return [list(sampler) for _ in range(epochs)]

    sampler = BudgetBatches(103, 8, 0.5, [24, 48], seed=0)
    epochs = draw(sampler)
    assert epochs == draw(BudgetBatches(103, 8, 0.5, [24, 48], seed=0))  # rebuilds repeat it
    assert epochs[0] != epochs[1]  # a fresh order and coin each epoch
    for batches in epochs:
        assert len(batches) == len(sampler) == 13
        keys = [k for b in batches for k in b]
        assert sorted(k[0] if isinstance(k, tuple) else k for k in keys) == list(range(103))
        for b in batches:  # one budget per batch, or none
            assert len({k[1] if isinstance(k, tuple) else None for k in b}) == 1
    budget = [b for e in epochs for b in e if isinstance(b[0], tuple)]
    assert 0.25 < len(budget) / 39 < 0.75 and {b[0][1] for b in budget} == {24, 48}
    assert not any(isinstance(b[0], tuple) for b in BudgetBatches(50, 8, 0.0, [24], seed=0))


def test_budget_settings_outside_their_range_are_refused_by_name():
    from vzexp.errors import ConfigError
    from vzexp.recipes.tiny_shapes.config import BuildTinyTaskConfig

    with pytest.raises(ConfigError, match="task.budget_fraction"):
        BuildTinyTaskConfig(budget_fraction=1.0)
    with pytest.raises(ConfigError, match="task.budget_tokens"):
        BuildTinyTaskConfig(budget_fraction=0.5, budget_tokens=[])
    with pytest.raises(ConfigError, match="task.budget_tokens"):
        BuildTinyTaskConfig(budget_tokens=[0])
    assert BuildTinyTaskConfig(budget_fraction=0.5).budget_tokens == [24]
