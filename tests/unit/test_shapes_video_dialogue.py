"""The shapes video and dialogue sets: deterministic, balanced, and answerable from the frames."""

from __future__ import annotations

import numpy as np
import pytest

from vzexp.data.shapes import COLORS
from vzexp.data.shapes_dialogue import ShapesDialogues
from vzexp.data.shapes_video import DIRECTIONS, ShapesVideo, video_vocabulary
from vzexp.errors import ConfigError


def centroid(frame: np.ndarray, rgb) -> np.ndarray:
    ys, xs = np.nonzero(np.abs(frame.astype(int) - rgb).sum(axis=2) < 30)
    return np.array([xs.mean(), ys.mean()])


def test_video_samples_are_deterministic_and_balanced():
    a, b = ShapesVideo(size=16), ShapesVideo(size=16)
    for i in (0, 5, 15):
        assert a[i].question == b[i].question and a[i].answer == b[i].answer
        assert all(
            np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a[i].image, b[i].image)
        )
    samples = [a[i] for i in range(16)]
    assert [s.meta["type"] for s in samples].count("direction") == 8
    assert sorted(s.answer for s in samples if s.meta["type"] == "direction") == sorted(
        list(DIRECTIONS) * 2
    )
    assert all(len(s.image) == 4 for s in samples)


def test_the_named_object_moves_the_way_the_answer_says():
    for i in range(0, 24, 2):  # direction questions
        sample = ShapesVideo(size=24)[i]
        color = sample.question.split()[3]
        frames = [np.asarray(f) for f in sample.image]
        start, end = centroid(frames[0], COLORS[color]), centroid(frames[-1], COLORS[color])
        dx, dy = end - start
        moved = (
            ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
        )
        assert moved == sample.answer, (i, dx, dy)


def test_the_answer_colour_appears_only_in_the_last_frame():
    for i in range(1, 24, 2):  # order questions
        sample = ShapesVideo(size=24)[i]
        frames = [np.asarray(f).astype(int) for f in sample.image]
        rgb = np.array(COLORS[sample.answer])
        present = [bool((np.abs(f - rgb).sum(axis=2) < 30).any()) for f in frames]
        assert present == [False] * (len(frames) - 1) + [True], i


def test_video_words_are_in_its_vocabulary_and_bad_sizes_are_refused():
    words = set(video_vocabulary())
    assert {"where", "does", "move", "up", "down", "appears", "last"} <= words
    with pytest.raises(ConfigError, match="data.dataset.frames"):
        ShapesVideo(frames=1)
    with pytest.raises(ConfigError, match="data.dataset.max_objects"):
        ShapesVideo(frames=2, max_objects=3)


def test_dialogues_ask_one_question_per_type_about_one_scene():
    a, b = ShapesDialogues(size=8, turns=5), ShapesDialogues(size=8, turns=5)
    for i in range(8):
        x, y = a[i], b[i]
        assert x.turns == y.turns and 1 <= len(x.turns) <= 5
        types = [t["type"] for t in x.turns]
        assert len(set(types)) == len(types)
        assert x.question == x.turns[0]["question"] and x.id == a.sample_id(i)
    with pytest.raises(ConfigError, match="data.dataset.turns"):
        ShapesDialogues(turns=0)
