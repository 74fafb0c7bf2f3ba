"""The synthetic shapes benchmark: determinism, random access, and answers recomputed from the
scene geometry by an independent checker (not by the generator's own helpers)."""

from __future__ import annotations

import hashlib
import json
import random
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from tokenizers.pre_tokenizers import Whitespace

from vzexp.data.sample import Sample
from vzexp.data.shapes import (
    COLORS,
    QA,
    QUESTION_TYPES,
    SHAPES,
    Background,
    Scene,
    ShapeObject,
    ShapesQA,
    ShapesScenes,
    ask,
    caption,
    make_scene,
    object_mask,
    object_prior,
    questions_for,
    render,
    vocabulary,
)
from vzexp.errors import ConfigError

S = 112
PATCH = 7
PLAIN = Background((128, 128, 128), "noise", 0.0, 8.0, 0.0, 0)
PATTERNS = {
    "color": r"What color is the (\w+)\?",
    "shape": r"What shape is the (\w+) object\?",
    "count": r"How many objects are there\?",
    "exist": r"Is there an? (\w+) (\w+) in the image\?",
    "position": r"Where is the (\w+) (\w+) relative to the (\w+) (\w+)\?",
    "small": r"What color is the small (\w+)\?",
}


def is_small(obj: ShapeObject, image_size: int) -> bool:
    return obj.size <= 0.09 * image_size + 1e-9


def find(scene: Scene, color: str, shape: str) -> ShapeObject:
    (obj,) = [o for o in scene.objects if (o.color, o.shape) == (color, shape)]
    return obj


def check_qa(scene: Scene, qa: QA) -> None:
    """Recompute the answer from the scene's objects and check the question is valid."""
    objs, size = scene.objects, scene.image_size
    kind = "exist" if qa.type.startswith("exist") else qa.type
    m = re.fullmatch(PATTERNS[kind], qa.question)
    assert m, qa
    if kind == "color":
        (target,) = [o for o in objs if o.shape == m[1]]  # the shape is unique in the scene
        assert qa.answer == target.color
    elif kind == "shape":
        (target,) = [o for o in objs if o.color == m[1]]
        assert qa.answer == target.shape
    elif kind == "count":
        assert qa.answer == str(len(objs))
    elif kind == "exist":
        asked = (m[1], m[2])
        present = {(o.color, o.shape) for o in objs}
        assert qa.answer == ("yes" if asked in present else "no")
        if qa.answer == "no":
            prior = object_prior()
            if qa.type == "exist_popular":
                absent = sorted((p for i, p in prior.items() if i not in present), reverse=True)
                assert prior[asked] >= absent[2] - 1e-12  # among the 3 most frequent absent
            elif qa.type == "exist_adversarial":
                assert any(asked[0] == c or asked[1] == s for c, s in present)
        assert ("an" in qa.question.split()) == (m[1] == "orange")
    elif kind == "position":
        a, b = find(scene, m[1], m[2]), find(scene, m[3], m[4])
        dx, dy = a.x - b.x, a.y - b.y
        if qa.answer in ("left", "right"):
            assert abs(dx) >= 1.5 * abs(dy) and abs(dx) >= 0.15 * size
            assert (dx < 0) == (qa.answer == "left")
        else:
            assert qa.answer in ("above", "below")
            assert abs(dy) >= 1.5 * abs(dx) and abs(dy) >= 0.15 * size
            assert (dy < 0) == (qa.answer == "above")  # image coordinates: above = smaller y
    elif kind == "small":
        (target,) = [o for o in objs if is_small(o, size)]  # the only small object
        assert target.shape == m[1] and qa.answer == target.color
        assert len(objs) >= 2


def check_scene(scene: Scene) -> None:
    size = scene.image_size
    assert len({(o.color, o.shape) for o in scene.objects}) == len(scene.objects)
    assert 1 <= len(scene.objects) <= 4
    for o in scene.objects:
        left, top = o.x - o.size / 2, o.y - o.size / 2
        assert 0 <= left and left + o.size <= size and 0 <= top and top + o.size <= size
        if is_small(o, size):
            assert 0.07 * size <= o.size <= 0.09 * size
            assert PATCH <= o.size <= 2 * PATCH  # about 1-2 patches of the 16x16 grid
        else:
            assert 0.16 * size <= o.size <= 0.30 * size
    assert sum(is_small(o, size) for o in scene.objects) <= 1


def boxes_intersection(a: ShapeObject, b: ShapeObject, margin: float = 0) -> float:
    w = min(a.x + a.size / 2, b.x + b.size / 2) - max(a.x - a.size / 2, b.x - b.size / 2)
    h = min(a.y + a.size / 2, b.y + b.size / 2) - max(a.y - a.size / 2, b.y - b.size / 2)
    return max(0.0, w + margin) * max(0.0, h + margin)


def fingerprint(sample: Sample) -> tuple:
    return (sample.id, sample.image.tobytes(), sample.question, sample.answer, sample.meta)


def test_same_arguments_give_identical_samples_and_other_split_or_seed_differ():
    a, b = ShapesQA(size=16), ShapesQA(size=16)
    assert [fingerprint(a[i]) for i in range(16)] == [fingerprint(b[i]) for i in range(16)]
    for other in (ShapesQA(split="train", size=16), ShapesQA(size=16, seed=1)):
        same = [a[i].image.tobytes() == other[i].image.tobytes() for i in range(16)]
        assert not any(same)


DIGEST = """
import hashlib, json
from vzexp.data.shapes import ShapesQA, ShapesScenes
qa = ShapesQA(size=16, seed=3)
scenes = ShapesScenes(size=4, seed=3)
print(json.dumps({
    "qa": [[hashlib.sha256(s.image.tobytes()).hexdigest(), s.question, s.answer]
           for s in (qa[i] for i in range(16))],
    "scenes": [[hashlib.sha256(d["image"].tobytes()).hexdigest(), d["caption"],
                [[q.question, q.answer] for q in d["qas"]]] for d in (scenes[i] for i in range(4))],
}))
"""


def test_samples_are_identical_in_a_fresh_process(cli_env):
    proc = subprocess.run(
        [sys.executable, "-c", DIGEST], env=cli_env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = json.loads(proc.stdout)
    qa, scenes = ShapesQA(size=16, seed=3), ShapesScenes(size=4, seed=3)
    assert theirs["qa"] == [
        [hashlib.sha256(s.image.tobytes()).hexdigest(), s.question, s.answer]
        for s in (qa[i] for i in range(16))
    ]
    assert theirs["scenes"] == [
        [
            hashlib.sha256(d["image"].tobytes()).hexdigest(),
            d["caption"],
            [[q.question, q.answer] for q in d["qas"]],
        ]
        for d in (scenes[i] for i in range(4))
    ]


def test_random_access_does_not_depend_on_earlier_samples():
    alone = ShapesQA(size=10)[7]
    sequential = ShapesQA(size=10)
    before = [sequential[i] for i in range(7)]
    assert fingerprint(sequential[7]) == fingerprint(alone)
    assert len({s.id for s in before}) == 7
    assert fingerprint(ShapesQA(size=10)[-3]) == fingerprint(alone)
    with pytest.raises(IndexError):
        sequential[10]
    scenes = ShapesScenes(size=10)
    assert scenes[5]["scene"] == ShapesScenes(size=10)[5]["scene"]


def test_types_and_yes_no_are_balanced_and_samples_well_formed():
    ds = ShapesQA(size=160)
    samples = [ds[i] for i in range(len(ds))]
    assert Counter(s.meta["type"] for s in samples) == {t: 20 for t in QUESTION_TYPES}
    for qtype in QUESTION_TYPES:
        if qtype.startswith("exist"):
            answers = Counter(s.answer for s in samples if s.meta["type"] == qtype)
            assert answers == {"yes": 10, "no": 10}
    counts = Counter(s.answer for s in samples if s.meta["type"] == "count")
    assert set(counts) == {"1", "2", "3", "4"}
    s = samples[0]
    assert s.id == "shapes-test-00000" and s.meta["split"] == "test"
    assert s.image.mode == "RGB" and s.image.size == (S, S)
    assert s.meta["objects"] == [
        dict(color=o.color, shape=o.shape, size=o.size, x=o.x, y=o.y) for o in ds.scene(0).objects
    ]
    json.dumps(s.meta)  # plain data, loggable


def test_answers_match_the_scene_geometry():
    ds = ShapesQA(size=400, seed=5)
    small_elsewhere = 0
    for i in range(len(ds)):
        scene = ds.scene(i)
        sample = ds[i]
        check_scene(scene)
        check_qa(scene, QA(sample.meta["type"], sample.question, sample.answer))
        smalls = sum(is_small(o, S) for o in scene.objects)
        if sample.meta["type"] != "small" and smalls:
            # a small object elsewhere: exactly one, among at least two objects
            assert smalls == 1 and len(scene.objects) >= 2, i
            small_elsewhere += 1
    # the other question types get small objects too: 56 of this seed's 350 such samples
    assert small_elsewhere == 56


def test_ask_is_valid_at_other_sizes_and_with_a_coin_for_exist():
    rng = random.Random("ask")
    answers = Counter()
    for _ in range(60):
        for qtype in QUESTION_TYPES:
            scene, qa = ask(rng, qtype, image_size=56, max_objects=3)
            assert qa.type == qtype and scene.image_size == 56 and len(scene.objects) <= 3
            check_qa(scene, qa)
            if qtype.startswith("exist"):
                answers[qa.answer] += 1
    assert 60 <= answers["yes"] <= 120 and answers["yes"] + answers["no"] == 180


def test_questions_for_a_scene_are_all_valid():
    scenes = ShapesScenes(size=60, seed=2)
    for i in range(len(scenes)):
        item = scenes[i]
        scene, qas = item["scene"], item["qas"]
        check_scene(scene)
        for qa in qas:
            check_qa(scene, qa)
        by_type = Counter(qa.type for qa in qas)
        shapes = Counter(o.shape for o in scene.objects)
        assert by_type["color"] == sum(1 for o in scene.objects if shapes[o.shape] == 1)
        assert by_type["count"] == 1
        for qtype in ("exist_random", "exist_popular", "exist_adversarial"):
            assert sorted(qa.answer for qa in qas if qa.type == qtype) == ["no", "yes"]
        assert item["image"].tobytes() == render(scene).tobytes()
        assert item["caption"] == caption(scene)
    only = questions_for(scenes[0]["scene"], random.Random(0), types=["count"])
    assert [qa.type for qa in only] == ["count"]


def test_objects_do_not_overlap_unless_the_scene_allows_it():
    rng = random.Random("overlap")
    for _ in range(150):
        scene = make_scene(rng, overlap_prob=0.0, small=rng.random() < 0.3)
        check_scene(scene)
        assert not scene.allow_overlap
        for i, a in enumerate(scene.objects):
            for b in scene.objects[i + 1 :]:
                assert boxes_intersection(a, b, margin=1) == 0  # at least 1 px apart
    overlapped = 0
    for _ in range(150):
        scene = make_scene(rng, overlap_prob=1.0)
        assert scene.allow_overlap
        for i, a in enumerate(scene.objects):
            for b in scene.objects[i + 1 :]:
                inter = boxes_intersection(a, b)
                assert inter <= 0.3 * min(a.size, b.size) ** 2
                overlapped += inter > 0
    assert overlapped > 0


def test_object_mask_of_a_hand_built_scene():
    aligned = Scene((ShapeObject("red", "square", 14, x=21.0, y=28.0),), PLAIN, S)  # px 14..27
    mask = object_mask(aligned, 16)
    expected = np.zeros((16, 16))
    expected[3:5, 2:4] = 1.0
    assert mask.shape == (16, 16)
    np.testing.assert_allclose(mask, expected)

    shifted = Scene((ShapeObject("blue", "square", 14, x=17.0, y=28.0),), PLAIN, S)  # px 10..23
    expected = np.zeros((16, 16))
    expected[3:5, 1:4] = [4 / 7, 1.0, 3 / 7]
    np.testing.assert_allclose(object_mask(shifted, 16), expected, atol=1e-6)

    circle = Scene((ShapeObject("green", "circle", 28, x=56.0, y=56.0),), PLAIN, S)  # px 42..69
    mask = object_mask(circle, 16)
    assert np.all(mask[6:10, 6:10] > 0) and mask[:6].sum() == mask[10:].sum() == 0
    assert mask[7, 7] == 1.0 and 0 < mask[6, 6] < 1  # inner patch full, corner patch partial
    np.testing.assert_allclose(mask[6:10, 6:10].sum() * 49, np.pi * 14**2, rtol=0.03)

    image = np.asarray(render(aligned)).astype(int)
    assert (image[21:35, 14:28] == COLORS["red"]).all()
    assert (image[:, :13] == 128).all() and (image[36:] == 128).all()


def test_object_mask_and_pixels_match_random_scenes():
    rng = random.Random("mask")
    for _ in range(40):
        scene = make_scene(rng, overlap_prob=0.0, small=rng.random() < 0.5)
        mask = object_mask(scene, 16)
        assert mask.dtype.kind == "f" and mask.min() >= 0 and mask.max() <= 1
        inside = np.zeros((16, 16), bool)
        image = np.asarray(render(scene)).astype(int)
        for o in scene.objects:
            x0, y0 = int(o.x - o.size / 2), int(o.y - o.size / 2)
            inside[
                y0 // PATCH : (y0 + o.size - 1) // PATCH + 1,
                x0 // PATCH : (x0 + o.size - 1) // PATCH + 1,
            ] = True
            assert mask[int(o.y) // PATCH, int(o.x) // PATCH] > 0
            centre = image[int(o.y), int(o.x)]
            assert np.abs(centre - COLORS[o.color]).max() <= 2  # the object is drawn there
        assert (mask[~inside] == 0).all()
        # The background is low-saturation everywhere away from the objects.
        pixels = object_mask(scene, S)  # per-pixel binary mask
        far = np.ones((S, S), bool)
        for o in scene.objects:
            x0, y0 = int(o.x - o.size / 2), int(o.y - o.size / 2)
            far[max(0, y0 - 1) : y0 + o.size + 1, max(0, x0 - 1) : x0 + o.size + 1] = False
        assert (pixels[far] == 0).all()
        spread = image.max(axis=2) - image.min(axis=2)
        assert spread[far].max() <= 24 and min(max(c) - min(c) for c in COLORS.values()) >= 120


def test_caption_lists_objects_left_to_right():
    rng = random.Random("caption")
    for _ in range(50):
        scene = make_scene(rng, small=rng.random() < 0.5)
        text = caption(scene)
        assert text.endswith(" .")
        parts = [p.split() for p in text[: -len(" .")].split(" , ")]
        ordered = sorted(scene.objects, key=lambda o: o.x)
        assert len(parts) == len(ordered)
        for words, o in zip(parts, ordered):
            assert words == (["small"] if is_small(o, S) else []) + [o.color, o.shape]


def test_every_word_is_in_the_vocabulary():
    vocab = set(vocabulary())
    assert vocab == set(ShapesQA(size=1).vocabulary())
    assert {"yes", "no", "left", "below", "small", "?", ",", ".", "4", *COLORS, *SHAPES} <= vocab
    assert "5" not in vocab and "5" in vocabulary(5)
    split = Whitespace()
    texts = []
    ds = ShapesQA(size=300, seed=9)
    for i in range(len(ds)):
        texts += [ds[i].question, ds[i].answer]
    scenes = ShapesScenes(size=30, seed=9)
    for i in range(len(scenes)):
        item = scenes[i]
        texts += [item["caption"], *(t for qa in item["qas"] for t in (qa.question, qa.answer))]
    words = {w for t in texts for w, _ in split.pre_tokenize_str(t.lower())}
    assert words <= vocab, words - vocab


def test_priors_are_fixed_and_descending():
    prior = object_prior()
    assert len(prior) == len(COLORS) * len(SHAPES) == 24
    assert sum(prior.values()) == pytest.approx(1.0)
    colors = [sum(prior[c, s] for s in SHAPES) for c in COLORS]
    shapes = [sum(prior[c, s] for c in COLORS) for s in SHAPES]
    assert colors == sorted(colors, reverse=True) and len(set(colors)) == len(colors)
    assert shapes == sorted(shapes, reverse=True) and len(set(shapes)) == len(shapes)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"split": "val"}, "data.dataset.split"),
        ({"types": ["colour"]}, "data.dataset.types"),
        ({"types": []}, "data.dataset.types"),
        ({"size": 0}, "data.dataset.size"),
        ({"max_objects": 1}, "data.dataset.max_objects"),
        ({"image_size": 8}, "data.dataset.image_size"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs, key):
    with pytest.raises(ConfigError) as info:
        ShapesQA(**kwargs)
    assert info.value.key == key


def test_scenes_stream_rejects_a_bad_split():
    with pytest.raises(ConfigError, match="split"):
        ShapesScenes(split="validation")
