"""Epoch time of projector tuning with and without the compressed-token cache, side by side.

    python experiments/perf/bench_cache.py [--records 1000] [--tokens 12] [--rounds 2]

Both arms train the same ProjectorTuner on the same records of the shapes train split (exported
into the cache dir as task=tune does), one epoch each, alternating arms for `rounds` rounds so
that neither gets a warmer machine; the cache arm reads precomputed tokens, the other decodes each
PNG, runs the image processor, the tower and VisionZip in every step. The time to build the cache
(once, before the first epoch) is reported separately. Results: cache.json and stdout."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch

from vzexp.compress.visionzip import VisionZip
from vzexp.data.instruct import InstructDataset, read_instruct
from vzexp.data.shapes import INSTRUCT_FILE
from vzexp.data.shapes_instruct import shapes_instruct_dir
from vzexp.engine.feature_cache import FeatureCache
from vzexp.engine.trainer import EpochTimer
from vzexp.engine.tuning import ProjectorTuner, TuneDataModule
from vzexp.models.build import load_checkpoint
from vzexp.models.install import tokens_per_image
from vzexp.paths import cache_dir, resource_dir


def one_epoch(model, compressor, dataset, features, batch_size: int) -> float:
    tuner = ProjectorTuner(
        model,
        compressor,
        lr=1e-3,
        weight_decay=0.0,
        warmup_steps=1,
        total_steps=len(dataset) // batch_size + 1,
    )
    timer = EpochTimer()
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        callbacks=[timer],
    )
    trainer.fit(tuner, datamodule=TuneDataModule(dataset, batch_size, 0, 0, features))
    return timer.seconds[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("cache.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    model, processor = load_checkpoint(str(resource_dir() / "tiny_shapes"))
    initial = {k: v.clone() for k, v in model.model.multi_modal_projector.state_dict().items()}
    compressor = VisionZip(budget=args.tokens)
    root = shapes_instruct_dir(cache_dir(), args.records, 0, 112)
    records = read_instruct(root / INSTRUCT_FILE)
    k = tokens_per_image(model, compressor)
    with_pixels = InstructDataset(records, root / "images", processor, k, with_pixels=True)
    cached = InstructDataset(records, root / "images", processor, k, with_pixels=False)
    start = time.perf_counter()
    features = FeatureCache.build(model, compressor, with_pixels, args.batch_size)
    build_seconds = time.perf_counter() - start
    times: dict[str, list[float]] = {"no_cache": [], "cache": []}
    for _ in range(args.rounds):
        for arm in ("no_cache", "cache"):
            model.model.multi_modal_projector.load_state_dict(initial)
            dataset, feats = (with_pixels, None) if arm == "no_cache" else (cached, features)
            times[arm].append(one_epoch(model, compressor, dataset, feats, args.batch_size))
    median = {arm: statistics.median(t) for arm, t in times.items()}
    result = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "records": len(records),
        "tokens": k,
        "batch_size": args.batch_size,
        "epoch_seconds": times,
        "median_epoch_seconds": median,
        "cache_over_no_cache": median["cache"] / median["no_cache"],
        "cache_build_seconds": build_seconds,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
