"""Shared fixtures: tiny real models of the transformers classes, built from configs (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TINY_ENCODER = {
    "kind": "clip",
    "config": dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=56,
        patch_size=7,
        hidden_act="quick_gelu",
    ),
}
TINY_LLM = {
    "kind": "llama",
    "config": dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
    ),
}
WORDS = "what color is the square red green blue yellow".split()


@pytest.fixture(scope="session")
def tiny_parts():
    """(encoder config, llm config, words) of the tiny test models, to build variants of them."""
    return TINY_ENCODER, TINY_LLM, WORDS


@pytest.fixture(scope="session")
def tiny_llava():
    """(model, processor): a random tiny LlavaForConditionalGeneration, 8x8 grid + CLS."""
    from vzexp.models.build import assemble

    return assemble(TINY_ENCODER, TINY_LLM, WORDS, seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_llava) -> Path:
    """The tiny LLaVA saved as a llava-hf style directory (safetensors + processor files)."""
    model, processor = tiny_llava
    root = tmp_path_factory.mktemp("llava-tiny-hf")
    model.save_pretrained(root)
    processor.save_pretrained(root)
    return root


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (56, 56, 3), dtype=np.uint8)) for _ in range(3)]


@pytest.fixture
def cli_env(tmp_path) -> dict[str, str]:
    """Environment for CLI subprocesses: the repo's src on the path, MLflow in a temp SQLite store."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env["VZEXP_CACHE"] = str(tmp_path / "cache")  # exported training data, cached features
    env.pop("HYDRA_FULL_ERROR", None)
    if WORKERS > 1:
        env["OMP_NUM_THREADS"] = str(THREADS)
    return env


# pytest-xdist workers (nox -s tests runs 2) share the cores: each process, and each CLI subprocess
# it starts, gets its share of threads rather than all of them (oversubscribed cores run slower)
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, min(2, (os.cpu_count() or 1) // WORKERS))
torch.set_num_threads(THREADS)


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory) -> Path:
    """A cache directory shared by the tests of the real pretrained parts, so each part is
    converted once per test session (as users convert it once into ~/.cache/vzexp)."""
    return tmp_path_factory.mktemp("vzexp-real-cache")
