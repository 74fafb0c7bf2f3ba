"""The shapes train split in LLaVA's instruction format, exported once into the cache: the default
training data of task=tune (`vzexp.data.shapes.export_instruct` writes it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vzexp.data.instruct import InstructData
from vzexp.data.shapes import INSTRUCT_FILE, export_instruct
from vzexp.errors import ConfigError


def shapes_instruct_dir(cache_root: Path, scenes: int, seed: int, image_size: int) -> Path:
    """The exported train split in the cache, written once (reused by every later run)."""
    out = cache_root / f"shapes-instruct-s{seed}-n{scenes}-px{image_size}"
    if not (out / INSTRUCT_FILE).is_file():
        export_instruct(out, scenes, seed, image_size)
    return out


@dataclass
class ShapesTrainData(InstructData):
    """train_data=shapes: the shapes train split, generated into the cache on first use (or a
    LLaVA instruction JSON given by path)."""

    scenes: int = 2000
    image_size: int = 112

    def __post_init__(self):
        super().__post_init__()
        if self.path is None and self.scenes < 1:
            raise ConfigError("train_data.scenes", self.scenes, "an integer >= 1")

    def source(self, cache_root: Path) -> tuple[Path, Path]:
        if self.path is not None:
            return super().source(cache_root)
        root = shapes_instruct_dir(cache_root, self.scenes, self.seed, self.image_size)
        return root / INSTRUCT_FILE, root / "images"
