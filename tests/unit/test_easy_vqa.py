"""The easy-vqa reader on a copy of its layout (no package needed): samples, answer types,
one-line errors for a malformed file, and the instruction export (one conversation per image)."""

from __future__ import annotations

import json
import random

import pytest
from PIL import Image

from vzexp.data.easy_vqa import (
    EasyVQA,
    EasyVqaTrainData,
    answer_type,
    asks_present_attribute,
    balanced_order,
    export_instruct,
    image_attributes,
    instruct_records,
    present_twins,
)
from vzexp.data.instruct import InstructData
from vzexp.errors import ConfigError, MissingPathError

ROWS = [
    ["what color is the shape?", "red", 0],
    ["is there a circle?", "yes", 0],
    ["what shape is in the image?", "triangle", 1],
    ["does the image contain a blue shape?", "No", 1],
    ["what is the gray shape?", "circle", 1],
]


@pytest.fixture
def root(tmp_path):
    split = tmp_path / "test"
    (split / "images").mkdir(parents=True)
    (split / "questions.json").write_text(json.dumps(ROWS))
    for image_id in (0, 1):
        Image.new("RGB", (64, 64), (200, 30, 30)).save(split / "images" / f"{image_id}.png")
    return tmp_path


def test_samples_in_file_order_with_answer_types(root):
    data = EasyVQA("test", str(root))
    assert len(data) == 5
    sample = data[3]
    assert (sample.id, sample.question, sample.answer) == ("test-3", ROWS[3][0], "no")
    assert sample.meta == {"type": "yes/no", "image_id": 1}
    assert [answer_type(a) for a in ("yes", "circle", "teal")] == ["yes/no", "shape", "color"]


def test_instruct_export_groups_all_questions_of_an_image(root, tmp_path):
    records = instruct_records(EasyVQA("test", str(root)), seed=0)
    assert [r["image"] for r in records] == ["0.png", "1.png"]
    turns = records[1]["conversations"]
    assert len(turns) == 6 and turns[0]["value"].startswith("<image>\n")
    asked = {t["value"].removeprefix("<image>\n") for t in turns[0::2]}
    assert asked == {q for q, _, i in ROWS if i == 1}
    assert records == instruct_records(EasyVQA("test", str(root)), seed=0)  # seeded order
    image_root = export_instruct(tmp_path / "out", "test", str(root))
    assert image_root == root / "test" / "images"
    assert json.loads((tmp_path / "out" / "train.json").read_text()) == records


def test_present_attribute_follows_answer_and_negation():
    # the image holds a red circle
    assert asks_present_attribute("is there a red shape?", "yes")
    assert asks_present_attribute("is there not a circle in the image?", "no")
    assert asks_present_attribute("is no red shape present?", "no")
    assert not asks_present_attribute("does the image contain a triangle?", "no")
    assert not asks_present_attribute("does the image not contain a blue shape?", "yes")
    assert not asks_present_attribute("is a note shape present?", "no")  # "note" is not "not"


class Coin(random.Random):
    def __init__(self, value: float):
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_balanced_order_asks_two_yes_no_first_then_colour_and_shape():
    qas = [  # one red circle, in a seeded order
        ("is there a blue shape?", "no"),  # absent 1
        ("what color is the shape?", "red"),
        ("is there not a green shape?", "yes"),  # absent 2
        ("what is the color of the circle?", "red"),  # a rephrasing: last
        ("is there a red shape?", "yes"),  # present 1
        ("what shape is in the image?", "circle"),
        ("is there a triangle?", "no"),  # absent 3
        ("is there not a circle?", "no"),  # present 2
    ]
    present_first, absent_first = Coin(0.2), Coin(0.8)
    assert balanced_order(qas, present_first) == [qas[i] for i in (4, 0, 1, 5, 7, 2, 6, 3)]
    assert balanced_order(qas, absent_first) == [qas[i] for i in (0, 4, 1, 5, 2, 7, 6, 3)]
    # isolated turns: the present-attribute questions lead whatever the coin says
    assert balanced_order(qas, absent_first, present_first=True) == balanced_order(
        qas, present_first
    )


def test_balanced_records_keep_every_question_and_the_image_first(root):
    data = EasyVQA("test", str(root))
    for plain, balanced in zip(instruct_records(data), instruct_records(data, balanced=True)):
        assert balanced["conversations"][0]["value"].startswith("<image>\n")
        asked = [
            sorted(t["value"].removeprefix("<image>\n") for t in r["conversations"])
            for r in (plain, balanced)
        ]
        assert asked[0] == asked[1]


@pytest.mark.parametrize(
    "key, value",
    [("balance_yes_no", True), ("present_twins", True), ("answer_types", ["color"])],
)
def test_easy_vqa_orderings_are_refused_for_other_training_data(key, value):
    # other training data have no such key (their schema is InstructData); a file given by
    # path is not easy-vqa's split, so its orderings do not apply
    assert not hasattr(InstructData(name="shapes"), key)
    with pytest.raises(ConfigError, match=f"train_data.{key}"):
        EasyVqaTrainData(name="easy_vqa", path="/data/llava.json", **{key: value})
    assert getattr(EasyVqaTrainData(name="easy_vqa", **{key: value}), key) == value


def test_answer_types_keep_those_questions_and_drop_images_left_without_any(root):
    data = EasyVQA("test", str(root))
    colour = instruct_records(data, answer_types=("color",))
    assert [r["image"] for r in colour] == ["0.png"]
    assert colour[0]["conversations"] == [
        {"from": "human", "value": "<image>\nwhat color is the shape?"},
        {"from": "gpt", "value": "red"},
    ]
    shapes = instruct_records(data, answer_types=("shape", "color"))
    assert [len(r["conversations"]) // 2 for r in shapes] == [1, 2]  # no yes/no turn left


@pytest.mark.parametrize("value", [[], ["colour"], ["yes/no", "size"]])
def test_unknown_answer_types_are_refused_naming_the_allowed_ones(value):
    with pytest.raises(ConfigError, match=r"train_data.answer_types.*yes/no, shape, color"):
        EasyVqaTrainData(name="easy_vqa", answer_types=value)


def test_image_attributes_from_answers_present_questions_or_elimination():
    assert image_attributes(
        [("what color is the shape?", "red"), ("is a circle present?", "yes")]
    ) == {
        "color": "red",
        "shape": "circle",
    }
    # "is no triangle present? no" names a present shape; two absent shapes leave the third
    assert image_attributes([("is no triangle present?", "no")]) == {"shape": "triangle"}
    absent = [("is there a circle?", "no"), ("is there not a rectangle?", "yes")]
    assert image_attributes(absent) == {"shape": "triangle"}
    assert image_attributes([("is there a blue shape?", "no")]) == {}  # 7 colours remain


def test_present_twins_name_the_images_own_attribute_with_the_answer_flipped():
    qas = [
        ("is there a blue shape?", "no"),
        ("what color is the shape?", "red"),
        ("is there not a green shape in the image?", "yes"),
        ("is a triangle present?", "no"),
        ("what shape is this?", "circle"),
        ("is there a red shape?", "yes"),  # one present already: two twins balance three absent
    ]
    twins = present_twins(qas)
    assert twins[: len(qas)] == qas
    # the blue question's twin is the red one already asked: no question is asked twice
    assert twins[len(qas) :] == [
        ("is there not a red shape in the image?", "no"),
        ("is a circle present?", "yes"),
    ]
    yes_no = [qa for qa in twins if answer_type(qa[1]) == "yes/no"]
    assert sum(asks_present_attribute(*qa) for qa in yes_no) == 3 == len(yes_no) - 3
    # an attribute the questions do not tell gets no twin
    assert present_twins([("is there a blue shape?", "no")]) == [("is there a blue shape?", "no")]


def test_twin_records_ask_the_split_questions_and_their_twins(root):
    data = EasyVQA("test", str(root))
    record = instruct_records(data, balanced=True, twins=True)[1]  # image 1: one absent question
    asked = [t["value"].removeprefix("<image>\n") for t in record["conversations"][::2]]
    # the colour of "what is the gray shape?"
    assert "does the image contain a gray shape?" in asked
    assert len(asked) == 4


@pytest.mark.parametrize(
    "content, message",
    [
        ("[[", "not valid JSON"),
        (json.dumps([["q", "a"]]), "row 0"),
        (json.dumps({"q": 1}), "row 0"),
    ],
)
def test_a_malformed_question_file_is_one_line(root, content, message):
    (root / "test" / "questions.json").write_text(content)
    with pytest.raises(MissingPathError, match=message) as err:
        EasyVQA("test", str(root))
    assert "\n" not in str(err.value)


def test_missing_root_split_and_image(root, tmp_path):
    with pytest.raises(MissingPathError, match="no such directory"):
        EasyVQA("test", str(tmp_path / "nowhere"))
    with pytest.raises(MissingPathError, match="train/questions.json"):
        EasyVQA("train", str(root))
    with pytest.raises(ConfigError, match="data.dataset.split"):
        EasyVQA("val", str(root))
    (root / "test" / "images" / "1.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(MissingPathError, match="test-2"):
        EasyVQA("test", str(root))[2]
