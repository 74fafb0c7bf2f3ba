"""LLaVA's optimiser set-up, shared by the tiny recipe's stages and projector tuning: AdamW over
the trainable parameters, linear warm-up then cosine decay to zero (or a constant lr), stepped
per optimiser step."""

from __future__ import annotations

import math

import lightning as L
import torch


def warmup_cosine(warmup_steps: int, total_steps: int):
    """LLaVA's schedule: linear warm-up, then cosine decay to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def warmup_constant(warmup_steps: int, total_steps: int):
    """Linear warm-up, then the full lr to the end: a rule the model learns abruptly, late in
    training (easy-vqa's yes/no on SmolLM2, experiments/build_small_real), needs the lr still there."""

    def factor(step: int) -> float:
        return (step + 1) / warmup_steps if step < warmup_steps else 1.0

    return factor


SCHEDULES = {"cosine": warmup_cosine, "constant": warmup_constant}


class Scheduled(L.LightningModule):
    """AdamW over the trainable parameters with warm-up + cosine (or constant), stepped per
    optimiser step."""

    def __init__(
        self,
        lr: float,
        weight_decay: float,
        warmup_steps: int,
        total_steps: int,
        schedule: str = "cosine",
    ):
        super().__init__()
        self.lr, self.weight_decay = lr, weight_decay
        self.warmup_steps, self.total_steps = warmup_steps, total_steps
        self.schedule = SCHEDULES[schedule]

    def param_groups(self) -> list[dict]:
        """The optimiser's parameter groups (a group may set its own lr)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            self.param_groups(), lr=self.lr, weight_decay=self.weight_decay
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, self.schedule(self.warmup_steps, self.total_steps)
        )
        return [optimizer], [{"scheduler": schedule, "interval": "step"}]
