"""LLaVA's instruction format: reading, slicing, labels on the answers only, bad files in one line."""

from __future__ import annotations

import json

import pytest

from vzexp.data.conversation import IGNORE_INDEX
from vzexp.data.instruct import InstructDataset, collate, read_instruct, take_slice
from vzexp.data.shapes import INSTRUCT_FILE, export_instruct
from vzexp.errors import ConfigError, MissingPathError


@pytest.fixture(scope="module")
def shapes_processor():
    """The shipped default model's processor (its word-level vocabulary covers the shapes QA)."""
    from transformers import AutoProcessor

    from vzexp.paths import resource_dir

    return AutoProcessor.from_pretrained(resource_dir() / "tiny_shapes")


def write(tmp_path, records):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records))
    return path


def record(i, turns=(("What color is the square?", "red"),), image="a.png"):
    messages = []
    for k, (q, a) in enumerate(turns):
        messages += [
            {"from": "human", "value": f"<image>\n{q}" if k == 0 else q},
            {"from": "gpt", "value": a},
        ]
    return {"id": f"r{i}", "image": image, "conversations": messages}


def test_records_become_question_answer_turns_without_the_image_mark(tmp_path):
    two = (("What color is the square?", "red"), ("How many objects are there?", "2"))
    path = write(tmp_path, [record(0, two), {"id": "text-only", "conversations": []}])
    [r] = read_instruct(path)  # the text-only record is skipped
    assert r.id == "r0" and r.image == "a.png"
    assert r.turns == two


def test_a_fraction_is_a_seeded_random_subset_in_file_order_then_the_limit():
    records = list(range(100))
    tenth = take_slice(records, 0.1, None, seed=3)
    assert len(tenth) == 10 and tenth == sorted(tenth)
    assert tenth == take_slice(records, 0.1, None, seed=3) != take_slice(records, 0.1, None, 4)
    assert take_slice(records, 1.0, 5, 0) == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError, match="train_data.fraction"):
        take_slice(records, 0.0, None, 0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"image": "a.png"}', "expected a JSON list"),
        (
            json.dumps([{"image": "a.png", "conversations": [{"from": "human", "value": "q"}]}]),
            "record 0: 'conversations' must be",
        ),
        (
            json.dumps(
                [
                    {
                        "image": "a.png",
                        "conversations": [
                            {"from": "gpt", "value": "a"},
                            {"from": "human", "value": "q"},
                        ],
                    }
                ]
            ),
            "record 0: messages 0 and 1 must be",
        ),
        (json.dumps([{"image": 3, "conversations": []}]), "'image' must be one relative path"),
    ],
)
def test_a_malformed_file_is_one_line_naming_the_record(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(MissingPathError, match=message) as info:
        read_instruct(path)
    assert "\n" not in str(info.value)


def test_a_missing_file_names_the_key(tmp_path):
    with pytest.raises(MissingPathError, match=r"train_data.path=.*no such file"):
        read_instruct(tmp_path / "nope.json")


def test_shapes_export_is_deterministic_and_trains_on_answers_only(tmp_path, shapes_processor):
    for name in ("a", "b"):
        assert export_instruct(tmp_path / name, scenes=3, seed=0, image_size=112) == 3
    first = (tmp_path / "a" / INSTRUCT_FILE).read_text()
    assert first == (tmp_path / "b" / INSTRUCT_FILE).read_text()
    records = read_instruct(tmp_path / "a" / INSTRUCT_FILE)
    assert all(1 <= len(r.turns) <= 6 for r in records)
    dataset = InstructDataset(records, tmp_path / "a" / "images", shapes_processor, image_tokens=5)
    item = dataset[0]
    ids, labels = item["input_ids"].tolist(), item["labels"].tolist()
    image_id = shapes_processor.tokenizer.convert_tokens_to_ids(shapes_processor.image_token)
    assert ids.count(image_id) == 5
    # every labelled token is an answer token (or the end of a turn), never the question or image
    learned = shapes_processor.tokenizer.decode([t for t, lab in zip(ids, labels) if lab != -100])
    for _, answer in records[0].turns:
        assert answer in learned
    assert "?" not in learned
    assert item["pixel_values"].shape[0] == 3
    batch = collate([dataset[0], dataset[1]], pad_id=0)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["index"].tolist() == [0, 1]
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()


def test_an_unreadable_image_names_the_file_and_the_record(tmp_path, shapes_processor):
    (tmp_path / "a.png").write_bytes(b"not a png")
    dataset = InstructDataset(
        read_instruct(write(tmp_path, [record(0)])), tmp_path, shapes_processor, image_tokens=4
    )
    with pytest.raises(MissingPathError, match=r"a.png.*record 'r0'.*missing or corrupt"):
        dataset[0]
