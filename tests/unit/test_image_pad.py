"""model.image_pad: LLaVA-1.5's pad-to-square (`image_aspect_ratio=pad` in its evaluation) on
the transformers LLaVA image processor, checked against the rule written out by hand."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from PIL import Image
from transformers import CLIPImageProcessor, LlavaImageProcessorPil

from vzexp.errors import ConfigError
from vzexp.models.build import set_image_pad

MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's, LLaVA-1.5's


def processor() -> LlavaImageProcessorPil:
    return LlavaImageProcessorPil(
        size={"shortest_edge": 24}, crop_size={"height": 24, "width": 24}, image_mean=MEAN
    )


def expand2square(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """LLaVA's rule (llava/mm_utils.py): the image centred on a square of `background`."""
    width, height = image.size
    side = max(width, height)
    square = Image.new(image.mode, (side, side), background)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


def test_pad_is_llavas_expand2square_with_the_mean_colour():
    image = Image.fromarray(np.full((12, 30, 3), (200, 40, 90), dtype=np.uint8))  # wide
    padded = processor()
    set_image_pad(padded, True)
    ours = padded(images=image, return_tensors="np")["pixel_values"][0]
    background = tuple(int(x * 255) for x in MEAN)
    by_hand = processor()(images=expand2square(image, background), return_tensors="np")
    np.testing.assert_allclose(ours, by_hand["pixel_values"][0], atol=1e-6)
    # the top and bottom rows are the mean colour (about 0 once normalised); the middle row is
    # the image's colour
    assert np.abs(ours[:, 0, :]).max() < 0.02 and np.abs(ours[:, -1, :]).max() < 0.02
    assert ours[0, 12, 12] > 1.0  # red 200 of 255 normalised


def test_without_pad_a_wide_image_is_centre_cropped_and_null_keeps_the_processors_own():
    image = Image.fromarray(np.full((12, 30, 3), (200, 40, 90), dtype=np.uint8))
    cropped = processor()
    set_image_pad(cropped, False)
    values = cropped(images=image, return_tensors="np")["pixel_values"][0]
    assert values[0].min() > 1.0  # every pixel is the image's: nothing padded
    kept = processor()
    set_image_pad(kept, None)
    assert kept.do_pad is False


def test_a_llava_processor_naming_clips_image_processor_pads_with_its_settings(tiny_llava):
    """Many llava-hf checkpoints name CLIP's image processor: it becomes LLaVA's, same sizes."""
    loaded = copy.deepcopy(tiny_llava[1])  # the session's fixture stays as it is
    clip = loaded.image_processor
    image = Image.fromarray(np.full((10, 40, 3), (30, 220, 120), dtype=np.uint8))
    background = tuple(int(x * 255) for x in clip.image_mean)
    by_hand = clip(images=expand2square(image, background), return_tensors="np")["pixel_values"]
    set_image_pad(loaded, True)
    assert type(loaded.image_processor).__name__.startswith("LlavaImageProcessor")
    ours = loaded.image_processor(images=image, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(ours, by_hand, atol=1e-6)


def test_a_processor_without_pad_to_square_refuses_in_one_line():
    with pytest.raises(ConfigError, match=r"model.image_pad=True is not allowed: null for this"):
        set_image_pad(CLIPImageProcessor(), True)  # an image processor alone, not a LLaVA one
