"""Compressed visual tokens computed once per image and reused by every tuning epoch.

During projector tuning the tower and the compressor are frozen and deterministic, so their
output (the K tokens before the projector) depends only on the model, the compressor config and
the image. The cache file is keyed by all three (a hash of the model's tower weights and config,
the compressor's parameters, and each image's path, size and mtime); a change to any of them
gives a new file. Strategies that read the projector to select (DivPrune) cannot be cached:
the projector is what tuning changes."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from vzexp.errors import ConfigError

log = logging.getLogger("vzexp")


def tower_fingerprint(model) -> str:
    """A hash of the vision tower's config and weights (cheap: a strided sample of each tensor)."""
    tower = model.model.vision_tower
    digest = hashlib.sha256(tower.config.to_json_string().encode())
    digest.update(str(model.config.vision_feature_layer).encode())
    digest.update(str(model.config.vision_feature_select_strategy).encode())
    for name, tensor in sorted(tower.state_dict().items()):
        flat = tensor.detach().float().flatten()
        sample = flat[:: max(1, flat.numel() // 64)]
        digest.update(name.encode())
        digest.update(sample.cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def images_fingerprint(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def check_tunable(compressor) -> None:
    """Projector tuning feeds the compressor's tokens to the projector: encoder-side only."""
    if getattr(compressor, "kind", "encoder") != "encoder":
        raise ConfigError(
            "compressor",
            compressor.name,
            "an encoder-side strategy for projector tuning (LLM-side ones prune inside the "
            "LLM; evaluate them with task=eval)",
        )


def check_cacheable(compressor) -> None:
    check_tunable(compressor)
    if getattr(compressor, "selects_after_projector", False):
        raise ConfigError(
            "task.cache",
            True,
            f"false with compressor={compressor.name}: it selects after the projector, which "
            "tuning changes, so its tokens cannot be computed once (task.cache=false)",
        )


class FeatureCache:
    """features: (N, K, d_vision) for the dataset's images in order; loaded or computed."""

    def __init__(self, root: Path, model, compressor_params: dict, dataset):
        key = {
            "tower": tower_fingerprint(model),
            "compressor": compressor_params,
            "images": images_fingerprint([dataset.root / r.image for r in dataset.records]),
        }
        name = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
        self.path = Path(root) / f"features-{name[:20]}.safetensors"
        self.key = key

    def load_or_build(self, model, compressor, dataset, batch_size: int) -> torch.Tensor:
        if self.path.is_file():
            log.info("feature cache: reusing %s", self.path)
            return load_file(self.path)["features"]
        features = self.build(model, compressor, dataset, batch_size)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # atomic: a reader sees the whole file or none (DDP ranks may build it side by side)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        save_file({"features": features.contiguous()}, tmp, metadata={"key": json.dumps(self.key)})
        os.replace(tmp, self.path)
        log.info("feature cache: wrote %s (%s)", self.path, tuple(features.shape))
        return features

    @staticmethod
    @torch.no_grad()
    def build(model, compressor, dataset, batch_size: int) -> torch.Tensor:
        from tqdm.auto import tqdm

        from vzexp.models.llava import compressed_features

        loader = DataLoader(
            range(len(dataset)),
            batch_size=batch_size,
            collate_fn=lambda idx: torch.stack([dataset.pixels(i) for i in idx]),
        )
        device = next(model.parameters()).device
        chunks = [
            compressed_features(model, pixels.to(device), compressor).tokens.cpu()
            for pixels in tqdm(loader, desc="caching compressed tokens", leave=False)
        ]
        return torch.cat(chunks)
