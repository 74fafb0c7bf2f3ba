"""ProjectorTuner: VisionZip's third step, tuning only the multimodal projector so that the LLM
adapts to the compressed visual tokens.

The tower, the compressor and the LLM are frozen; only `model.model.multi_modal_projector` is a
submodule of the LightningModule, so checkpoints hold the projector and the optimiser state, not
the frozen model, and DDP synchronises the projector's gradients only. The visual tokens come
from the feature cache (batch["features"]) or are computed in the loop (batch["pixel_values"]).

The loss is the mean over the answer tokens of the whole global batch: each rank sums its token
losses and divides by the global token count (times the world size, which DDP's gradient
averaging divides back out), so 2 processes x batch b train exactly as 1 process x batch 2b."""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from vzexp.data.conversation import IGNORE_INDEX
from vzexp.data.isolated_turns import additive_mask
from vzexp.engine.schedule import Scheduled
from vzexp.engine.trunk_cache import TrunkCache


class ProjectorTuner(Scheduled):
    """`llm_layers` > 0 also trains the LLM's last decoder layers (a submodule too, so they are
    checkpointed and synchronised like the projector); 0 is VisionZip's projector-only recipe.
    `tune_projector=False` keeps the projector as loaded and trains those layers alone: no
    gradient then flows below them, so a step costs the forward pass and their backward only.
    With `cache_trunk` too, the frozen layers' output is kept per sample after the first epoch
    (`TrunkCache`), and later epochs run the trained layers alone.

    A model loaded in bfloat16 (`model.dtype=bfloat16`, with `trainer.precision=bf16-mixed`)
    keeps its frozen parts in bfloat16 (faster where the hardware computes bfloat16 natively),
    and the trained ones in float32 under autocast: an AdamW update (lr x ~1) is below a bfloat16
    weight's resolution (2^-8 of it). The caller casts the model back after saving them."""

    def __init__(
        self,
        model,
        compressor,
        llm_layers: int = 0,
        llm_lr: float | None = None,
        tune_projector: bool = True,
        cache_trunk: bool = False,
        **schedule,
    ):
        super().__init__(**schedule)
        self.llm_lr = llm_lr  # the LLM layers' own learning rate (None: the projector's)
        self.tune_projector = tune_projector
        model.requires_grad_(False)
        self.projector = model.model.multi_modal_projector
        self.projector.requires_grad_(tune_projector)
        layers = model.model.language_model.layers
        if llm_layers > len(layers):
            from vzexp.errors import ConfigError

            raise ConfigError(
                "task.llm_layers",
                llm_layers,
                f"0..{len(layers)} (the LLM has {len(layers)} layers)",
            )
        self.llm_tail = nn.ModuleList(list(layers)[len(layers) - llm_layers :])
        self.llm_tail.requires_grad_(True)
        for trained in (self.projector, self.llm_tail) if tune_projector else (self.llm_tail,):
            trained.float()
        # not a submodule: kept out of checkpoints, DDP and Lightning's device moves
        self.__dict__["vlm"] = model
        self.compressor = compressor
        first_trained = len(layers) - llm_layers
        use_trunk = cache_trunk and not tune_projector and 0 < llm_layers < len(layers)
        # not a submodule either: per-rank activations, rebuilt after a resume
        self.__dict__["trunk"] = (
            TrunkCache(model.model.language_model, first_trained) if use_trunk else None
        )

    def param_groups(self) -> list[dict]:
        groups = [{"params": list(self.projector.parameters())}] if self.tune_projector else []
        if len(self.llm_tail):
            tail = {"params": list(self.llm_tail.parameters())}
            if self.llm_lr is not None:
                tail["lr"] = self.llm_lr
            groups.append(tail)
        return groups

    def on_fit_start(self) -> None:
        self.vlm.to(self.device)
        self.vlm.eval()  # frozen parts in eval mode (no dropout)
        self.projector.train(self.tune_projector)
        self.llm_tail.train()

    def visual_tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "features" in batch:
            return batch["features"]
        from vzexp.models.llava import compressed_features

        with torch.no_grad():
            return compressed_features(self.vlm, batch["pixel_values"], self.compressor).tokens

    def token_losses(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of the answer tokens' cross-entropy, their count) for this rank's batch."""
        hidden = self.last_hidden(batch)
        # logits only where an answer token is predicted: the LM head over a real vocabulary
        # (49k for SmolLM2) would otherwise cost a fifth of the step for nothing
        labels = batch["labels"][:, 1:]
        learned = labels != IGNORE_INDEX
        logits = self.vlm.lm_head(hidden[:, :-1][learned])
        loss_sum = nn.functional.cross_entropy(logits.float(), labels[learned], reduction="sum")
        return loss_sum, learned.sum()

    def last_hidden(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The language model's final hidden states for the batch; from the trunk cache when it
        holds every sample (the trained layers alone), else the whole forward pass (recorded
        into the cache when there is one)."""
        language_model = self.vlm.model.language_model
        inputs = {"attention_mask": batch["attention_mask"]}
        if "turn_mask" in batch:  # isolated turns: each sees the image prefix and itself only
            dtype = next(language_model.parameters()).dtype
            inputs["attention_mask"] = additive_mask(batch["turn_mask"], dtype)
            inputs["position_ids"] = batch["position_ids"]
        if self.trunk is not None and self.trunk.covers(batch):
            with self.trunk.trained_layers_only():
                out = language_model(inputs_embeds=self.trunk.replayed(batch), **inputs)
            return out.last_hidden_state
        projected = self.projector(self.visual_tokens(batch))
        from vzexp.models.llava import fill_image_slots

        embeds = fill_image_slots(self.vlm, batch["input_ids"], projected)
        recording = self.trunk.recording(batch) if self.trunk is not None else nullcontext()
        with recording:
            return language_model(inputs_embeds=embeds, **inputs).last_hidden_state

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss_sum, count = self.token_losses(batch)
        world = self.trainer.world_size
        total = self.all_gather(count).sum() if world > 1 else count
        loss = loss_sum * world / total.clamp(min=1)
        # the logged value is the global batch's mean token loss on every rank
        self.log("tune/loss", loss.detach() / world, prog_bar=True, sync_dist=True, reduce_fx="sum")
        self.log("tune/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        return loss


class TuneDataModule(L.LightningDataModule):
    """Batches of the instruction dataset, in an order that depends only on the seed and the
    epoch (a DistributedSampler over the actual world size, also for one process), so resumed
    and multi-process runs see the same global batches as a single uninterrupted one."""

    def __init__(self, dataset, batch_size: int, pad_id: int, seed: int, features=None):
        super().__init__()
        self.dataset, self.batch_size, self.pad_id, self.seed = dataset, batch_size, pad_id, seed
        self.features = features  # (N, K, d) from the feature cache, or None

    def collate(self, items: list[dict]) -> dict[str, torch.Tensor]:
        from vzexp.data.instruct import collate

        batch = collate(items, self.pad_id)
        if self.features is not None:
            batch["features"] = self.features[batch["index"]]
        return batch

    def train_dataloader(self) -> DataLoader:
        world, rank = self.trainer.world_size, self.trainer.global_rank
        sampler = DistributedSampler(
            self.dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed
        )
        return DataLoader(
            self.dataset, batch_size=self.batch_size, sampler=sampler, collate_fn=self.collate
        )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file and renamed: a job killed while saving leaves the
    previous checkpoint intact, never a truncated one that resume would fail on."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)


class EpochCheckpoint(L.Callback):
    """`last.ckpt` at the end of every training epoch (projector + optimiser + loop state): a
    killed run resumes at the last finished epoch, whose data order it replays exactly."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        trainer.save_checkpoint(self.path)
