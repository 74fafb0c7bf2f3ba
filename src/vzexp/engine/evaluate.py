"""Evaluation through Lightning's predict loop: batched greedy generation, timed per phase."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset
from transformers.generation.streamers import BaseStreamer

from vzexp.data.sample import Sample
from vzexp.data.scorer import exact_match


class Collator:
    """Samples -> the processor's tensors (prompt via the model's chat template, left padding)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, samples: list[Sample]) -> dict[str, Any]:
        # samples whose image could not be read (data.on_bad_image=skip) are passed through
        skipped = [s for s in samples if s.image is None]
        samples = [s for s in samples if s.image is not None]
        if not samples:
            return {"inputs": None, "skipped": skipped}
        if any(s.turns for s in samples):  # asked turn by turn in the evaluator (KV cache)
            return {"inputs": None, "dialogues": samples, "skipped": skipped}
        prompts = [
            self.processor.apply_chat_template(
                [
                    {
                        "role": "user",
                        # one image slot per image: a video's frames in order
                        "content": [{"type": "image"} for _ in s.images]
                        + [{"type": "text", "text": s.question}],
                    }
                ],
                add_generation_prompt=True,
            )
            for s in samples
        ]
        inputs = self.processor(
            # nested per sample: processors then know which images share a prompt (OneVision
            # gives a sample's several images one view each, as it was trained)
            images=[[image.convert("RGB") for image in s.images] for s in samples],
            text=prompts,
            padding=True,
            return_tensors="pt",
        )
        return {
            "inputs": dict(inputs),
            "images_per_sample": [len(s.images) for s in samples],
            "ids": [s.id for s in samples],
            "questions": [s.question for s in samples],
            "answers": [s.answer for s in samples],
            "types": [s.meta.get("type") for s in samples],
            "metas": [s.meta for s in samples],
            "skipped": skipped,
        }


class EvalDataModule(L.LightningDataModule):
    """The samples still to predict (data.limit and resume are applied by the caller)."""

    def __init__(self, dataset: Dataset, processor, batch_size: int = 8, num_workers: int = 0):
        super().__init__()
        self.dataset, self.processor = dataset, processor
        self.batch_size, self.num_workers = batch_size, num_workers

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=Collator(self.processor),
        )


class PhaseTimer(BaseStreamer):
    """generate() calls put() with the prompt just before the LLM prefill, then once per new
    token step: the gap between the first two calls is the LLM prefill (images are encoded
    before the first call in transformers 5)."""

    def __init__(self):
        self.stamps: list[float] = []

    def put(self, value) -> None:
        self.stamps.append(time.perf_counter())

    def end(self) -> None:
        self.stamps.append(time.perf_counter())

    @property
    def prefill(self) -> float:
        return self.stamps[1] - self.stamps[0] if len(self.stamps) > 1 else 0.0


class Evaluator(L.LightningModule):
    """Evaluates a model patched with a compressor: `installed` is the vzexp.models.install
    handle, whose statistics give each record its visual tokens and kept indices."""

    def __init__(
        self,
        installed,
        processor,
        max_new_tokens: int = 4,
        sample_score=None,
        overlays: int = 0,
        overlay_dir: Path | None = None,
        dialogue_baseline: bool = False,
    ):
        super().__init__()
        self.installed = installed
        self.model, self.processor, self.max_new_tokens = installed.model, processor, max_new_tokens
        self.dialogue_baseline = dialogue_baseline
        self.sample_score = sample_score or (lambda r: exact_match(r["prediction"], r["answer"]))
        self.overlays, self.overlay_dir = overlays, overlay_dir

    def save_overlays(self, batch: dict[str, Any]) -> None:
        """Kept-token overlays of the first samples (the strategy's kept indices and, for
        VisionZip, its contextual groups), as PNGs in overlay_dir."""
        from PIL import Image

        from vzexp.encoders.capture import tower_info
        from vzexp.overlays import overlay

        stats = self.installed.stats
        result, rows = stats.last, stats.base_rows
        if result is None or result.index is None or rows is None or self.overlay_dir is None:
            return  # nothing kept to draw, or a family whose views are not a square grid
        info = tower_info(self.model.model.vision_tower)
        processor = self.processor.image_processor
        mean = torch.tensor(processor.image_mean).view(3, 1, 1)
        std = torch.tensor(processor.image_std).view(3, 1, 1)
        self.overlay_dir.mkdir(parents=True, exist_ok=True)
        pixels = batch["inputs"]["pixel_values"].float().cpu()
        if pixels.dim() == 5:  # (images, views, C, H, W): draw each image's base view
            pixels = pixels[:, 0]
        for i in range(min(self.overlays, pixels.shape[0], len(rows))):
            rgb = ((pixels[i] * std + mean).clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
            row = rows[i]
            groups = None if result.groups is None else result.groups[row].tolist()
            picture = overlay(
                Image.fromarray(rgb), info.has_cls, info.seq_len, result.index[row].tolist(), groups
            )
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(batch["ids"][i]))  # ids may hold "/"
            picture.save(self.overlay_dir / f"{name}.png")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        skipped = [
            {
                "id": s.id,
                "question": s.question,
                "answer": s.answer,
                "type": s.meta.get("type"),
                "meta": s.meta,
                "prediction": "",
                "skipped": s.meta["skipped"],
                "correct": False,
            }
            for s in batch.get("skipped", [])
        ]
        if batch.get("dialogues"):
            return self.dialogue_step(batch["dialogues"]) + skipped
        if batch["inputs"] is None:
            return skipped
        return self.generate_step(batch, batch_idx) + skipped

    def dialogue_step(self, samples: list[Sample]) -> list[dict[str, Any]]:
        """Each sample's questions in one conversation, reusing the visual tokens and the KV
        cache; with dialogue_baseline also re-sending everything every turn, timed apart."""
        from vzexp.engine.dialogue import converse

        records = []
        for sample in samples:
            stats = self.installed.stats
            stats.reset()
            self.installed.compressor.sample_keys = [str(sample.id)] * len(sample.images)
            images = [image.convert("RGB") for image in sample.images]
            questions = [t["question"] for t in sample.turns]
            turns = converse(self.installed, self.processor, images, questions, self.max_new_tokens)
            visual = stats.visual_tokens / max(stats.images, 1) * len(images)
            kept = stats.kept
            again = None
            if self.dialogue_baseline:
                again = converse(
                    self.installed, self.processor, images, questions, self.max_new_tokens, True
                )
            out_turns = []
            for k, (asked, turn) in enumerate(zip(sample.turns, turns)):
                record = {
                    "question": asked["question"],
                    "answer": asked["answer"],
                    "type": asked.get("type"),
                    "meta": sample.meta,
                    "prediction": turn.prediction,
                    "turn_s": turn.seconds,
                    "prefill_tokens": turn.new_tokens,
                }
                if again is not None:
                    record["reencode_turn_s"] = again[k].seconds
                    record["reencode_prefill_tokens"] = again[k].new_tokens
                    record["reencode_prediction"] = again[k].prediction
                record["correct"] = self.sample_score(record)
                out_turns.append(record)
            records.append(
                {
                    "id": sample.id,
                    "question": sample.question,
                    "answer": sample.answer,
                    "type": sample.meta.get("type"),
                    "meta": sample.meta,
                    "prediction": turns[0].prediction,
                    "visual_tokens": visual,
                    "turns": out_turns,
                    **({"kept": kept} if kept is not None else {}),
                    "correct": sum(t["correct"] for t in out_turns) / len(out_turns),
                }
            )
        return records

    def generate_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        stats = self.installed.stats
        stats.reset()
        # random choices are drawn per sample id: the same whatever the batch, rank or resume
        self.installed.compressor.sample_keys = [str(i) for i in batch["ids"]]
        timer = PhaseTimer()
        inputs = batch["inputs"]
        prompt_len = inputs["input_ids"].shape[1]
        start = time.perf_counter()
        out = self.model.generate(
            **inputs,
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            streamer=timer,
            pad_token_id=self.processor.tokenizer.pad_token_id,
        )
        total = time.perf_counter() - start
        if batch_idx == 0 and self.overlays and self.global_rank == 0:
            self.save_overlays(batch)
        texts = self.processor.tokenizer.batch_decode(out[:, prompt_len:], skip_special_tokens=True)
        n = len(texts)
        # per sample: its images' visual tokens and kept indices (a video: its frames'); the
        # kept indices are recorded so that a rerun can be checked to select the same ones
        per_sample = batch.get("images_per_sample") or [1] * n
        starts = [sum(per_sample[:i]) for i in range(n)]
        lengths = stats.lengths if len(stats.lengths) == sum(per_sample) else None
        kept = stats.kept if stats.kept is not None and len(stats.kept) == sum(per_sample) else None
        llm_per_image = stats.llm_visual_tokens / max(stats.images, 1)
        records = []
        for i, text in enumerate(texts):
            records.append(
                {
                    "id": batch["ids"][i],
                    "question": batch["questions"][i],
                    "answer": batch["answers"][i],
                    "type": batch["types"][i],
                    "meta": batch["metas"][i],
                    "prediction": text.strip(),
                    "visual_tokens": (
                        sum(lengths[starts[i] : starts[i] + per_sample[i]])
                        if lengths is not None
                        else stats.visual_tokens // max(stats.images, 1)
                    ),
                    # Batch-level times shared equally by the batch's samples. transformers encodes
                    # images before the LLM prefill, so time to first token = vision + LLM prefill.
                    "vision_s": stats.vision_seconds / n,
                    "encoder_s": stats.encoder_seconds / n,
                    "compress_s": stats.compress_seconds / n,
                    "llm_prefill_s": timer.prefill / n,
                    "prefill_s": (stats.vision_seconds + timer.prefill) / n,
                    "generate_s": total / n,
                }
            )
            # what the LLM's layers see on average (LLM-side strategies prune inside)
            records[-1]["visual_tokens_llm"] = (
                llm_per_image * per_sample[i]
                if stats.llm_visual_tokens
                else float(records[-1]["visual_tokens"])
            )
            if kept is not None:
                mine = kept[starts[i] : starts[i] + per_sample[i]]
                records[-1]["kept"] = mine[0] if per_sample[i] == 1 else mine
            records[-1]["correct"] = self.sample_score(records[-1])
        return records


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def accuracy_by_type(records: list[dict[str, Any]]) -> dict[str, float]:
    """accuracy/<question type> for benchmarks whose samples carry a type."""
    by_type: dict[str, list[float]] = {}
    for r in records:
        if r.get("type"):
            by_type.setdefault(r["type"], []).append(r["correct"])
    return {f"accuracy/{t}": sum(v) / len(v) for t, v in by_type.items()}


def dialogue_turns(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dialogue records -> one record per turn (the unit that is scored), the dialogue's visual
    tokens on each."""
    flat = []
    for r in records:
        for k, turn in enumerate(r["turns"]):
            flat.append(
                {**turn, "id": f"{r['id']}#{k}", "turn": k, "visual_tokens": r["visual_tokens"]}
            )
    return flat


def dialogue_metrics(turns: list[dict[str, Any]]) -> dict[str, float]:
    """Time per turn with the visual tokens and KV cache reused, and (with dialogue_baseline)
    re-sending the image and the whole conversation every turn, measured side by side."""
    n = max(len(turns), 1)
    out = {
        "dialogue_turn_ms": 1000 * sum(t["turn_s"] for t in turns) / n,
        "dialogue_prefill_tokens_per_turn": sum(t["prefill_tokens"] for t in turns) / n,
    }
    if turns and all("reencode_turn_s" in t for t in turns):
        again = 1000 * sum(t["reencode_turn_s"] for t in turns) / n
        out["dialogue_reencode_turn_ms"] = again
        out["dialogue_time_saved"] = 1 - out["dialogue_turn_ms"] / max(again, 1e-12)
        out["dialogue_reencode_prefill_tokens_per_turn"] = (
            sum(t["reencode_prefill_tokens"] for t in turns) / n
        )
        # both paths see the same token sequence: their greedy answers should agree
        out["dialogue_reencode_agreement"] = (
            sum(t["reencode_prediction"] == t["prediction"] for t in turns) / n
        )
    return out


def summarize(records: list[dict[str, Any]], device: str, scorer=None) -> dict[str, float]:
    """The benchmark's metrics (its scorer; mean per-sample score otherwise), accuracy per
    question type when samples carry one, and the efficiency figures. Samples skipped for an
    unreadable image (data.on_bad_image=skip) are left out of every figure and counted.
    Dialogues are scored per turn."""
    skipped = sum(1 for r in records if r.get("skipped"))
    records = [r for r in records if not r.get("skipped")]
    dialogues = [r for r in records if "turns" in r]
    extra: dict[str, float] = {}
    if dialogues:
        records = dialogue_turns(dialogues)
        extra = {"dialogues": float(len(dialogues)), **dialogue_metrics(records)}

    def mean(key: str) -> float:
        return sum(r[key] for r in records) / max(len(records), 1)

    scores = scorer.metrics(records) if scorer is not None else {}
    # a server-scored split (vzexp.data.submission): no sample has a score, no accuracy
    graded = not records or any(r.get("correct") is not None for r in records)
    metrics = {
        **({"accuracy": mean("correct")} if graded else {}),
        **scores,
        **(accuracy_by_type(records) if graded else {}),
        "samples": float(len(records)),
        **({"skipped_samples": float(skipped)} if skipped else {}),
        "visual_tokens": mean("visual_tokens"),
        **extra,
    }
    if records and all("prefill_s" in r for r in records):  # single-turn generation, timed by phase
        metrics.update(
            {
                "visual_tokens_llm": mean("visual_tokens_llm"),
                "prefill_ms_per_sample": 1000 * mean("prefill_s"),
                "vision_ms_per_sample": 1000 * mean("vision_s"),
                "encoder_ms_per_sample": 1000 * mean("encoder_s"),
                "compress_ms_per_sample": 1000 * mean("compress_s"),
                # the strategy's selection/merging cost as a share of the tower forward it follows
                "selection_overhead": mean("compress_s") / max(mean("encoder_s"), 1e-12),
                "llm_prefill_ms_per_sample": 1000 * mean("llm_prefill_s"),
                "generate_ms_per_sample": 1000 * mean("generate_s"),
            }
        )
    metrics["peak_memory_mb"] = peak_memory_mb(device)
    return metrics


class SkipBadImages(Dataset):
    """data.on_bad_image=skip: a sample whose image cannot be read becomes a placeholder that
    the evaluator records as skipped (with the reason) instead of stopping the run."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Sample:
        from vzexp.errors import MissingPathError

        try:
            return self.dataset[i]
        except MissingPathError as exc:
            sample_id = self.dataset.sample_id(i) if hasattr(self.dataset, "sample_id") else str(i)
            return Sample(
                id=sample_id, image=None, question="", answer="", meta={"skipped": str(exc)}
            )
