"""Processors for image-only use when torchvision is not installed.

transformers' Qwen2-VL and LLaVA-OneVision processors hold a video processor, which needs
torchvision, and refuse to be built without one even for images (transformers issue #48558).
vzexp feeds video as frames, i.e. images, so an image-only processor is all it needs: the same
class with `video_processor=None` accepted."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path


@functools.cache
def image_only(cls):
    """`cls` without its video processor: built, called and saved with images only (the
    sub-processor list that transformers reads from __init__ leaves the video processor out)."""

    def get_attributes(klass):
        return [a for a in cls.get_attributes() if a != "video_processor"]

    @functools.wraps(cls.__init__)  # the parent's signature: transformers saves what it names
    def __init__(self, *args, video_processor=None, **kwargs):
        cls.__init__(self, *args, video_processor=None, **kwargs)
        self.video_processor = None

    return type(
        cls.__name__,
        (cls,),
        {"get_attributes": classmethod(get_attributes), "__init__": __init__},
    )


def load_processor(root: Path, cls):
    """`cls.from_pretrained(root)`, or, when that fails for want of torchvision, the same
    processor built image-only from the directory's image processor, tokenizer and settings."""
    from transformers import AutoImageProcessor, AutoTokenizer
    from transformers.utils import is_torchvision_available

    if is_torchvision_available() or "video_processor" not in inspect.signature(cls).parameters:
        return cls.from_pretrained(root)
    settings, _ = cls.get_processor_dict(str(root))
    accepted = set(inspect.signature(cls).parameters) - {"image_processor", "tokenizer"}
    kwargs = {k: v for k, v in settings.items() if k in accepted and k != "video_processor"}
    return image_only(cls)(
        image_processor=AutoImageProcessor.from_pretrained(root),
        tokenizer=AutoTokenizer.from_pretrained(root),
        video_processor=None,
        **kwargs,
    )
