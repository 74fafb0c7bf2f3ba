"""Seeded uniform draws for strategies that choose at random (random selection, VisionZip's
target_pick=random).

When the evaluation loop names the batch's samples (`Compressor.sample_keys`), each sample's
draws come from its own generator seeded by (seed, sample id): a sample then gets the same draws
whatever its batch, its DDP rank or a resumed run. Without names (the Python API, tuning) the
draws come in order from one generator seeded by `seed`."""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor


def sample_seed(seed: int, key: str) -> int:
    """A stable 63-bit seed for one sample (Python's hash() changes between processes)."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class SeededDraws:
    def __init__(self, seed: int):
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)

    def uniform(self, rows: int, size: int, keys: list[str] | None = None) -> Tensor:
        """(rows, size) uniform noise on the CPU, one row per sample."""
        if keys is not None and len(keys) == rows:
            return torch.stack(
                [
                    torch.rand(
                        size,
                        generator=torch.Generator().manual_seed(sample_seed(self.seed, str(k))),
                    )
                    for k in keys
                ]
            )
        return torch.rand(rows, size, generator=self._generator)
