"""The shapes train split in LLaVA's instruction format, exported once into the cache: the default
training data of task=tune (`vzexp.data.shapes.export_instruct` writes it)."""

from __future__ import annotations

from pathlib import Path

from vzexp.data.shapes import INSTRUCT_FILE, export_instruct


def shapes_instruct_dir(cache_root: Path, scenes: int, seed: int, image_size: int) -> Path:
    """The exported train split in the cache, written once (reused by every later run)."""
    out = cache_root / f"shapes-instruct-s{seed}-n{scenes}-px{image_size}"
    if not (out / INSTRUCT_FILE).is_file():
        export_instruct(out, scenes, seed, image_size)
    return out
