"""The Lightning side of a plain torch training loop: code outside vzexp.engine writes its model,
loss and data in torch and hands them to Lightning through these.

A recipe builds an `nn.Module` whose `forward(batch)` returns `(loss, metrics)` and whose trainable
parameters are the ones to optimise, wraps it in `StepModule` with its learning-rate schedule, and
fits it with a Trainer from `vzexp.engine.trainer.make_trainer`."""

from __future__ import annotations

from collections.abc import Mapping

import lightning as L
import torch
from torch import nn

from vzexp.engine.schedule import Scheduled


class StepModule(Scheduled):
    """Trains the parameters of `net` that require a gradient with AdamW and a warm-up schedule
    (`Scheduled`). `net(batch)` is one training step: it returns the loss to minimise and a
    dict of named scalars to log (each under its own name, shown in the progress bar). `net` is a
    submodule, so Lightning moves it to the device and switches its train/eval mode."""

    def __init__(
        self,
        net: nn.Module,
        lr: float,
        weight_decay: float,
        warmup_steps: int,
        total_steps: int,
        schedule: str = "cosine",
    ):
        super().__init__(lr, weight_decay, warmup_steps, total_steps, schedule)
        self.net = net

    def training_step(self, batch: Mapping, batch_idx: int) -> torch.Tensor:
        loss, metrics = self.net(batch)
        self.log_dict(metrics, prog_bar=True)
        return loss


class EpochSetter(L.Callback):
    """Tells datasets with an `epoch` attribute which epoch it is (fresh QA subsets each epoch)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.dataset.epoch = trainer.current_epoch
