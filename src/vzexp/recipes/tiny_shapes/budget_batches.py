"""Budget batches for the tiny recipe's instruct stage (task.budget_fraction): a share of the
batches shows the LLM the image compressed to a budget instead of all its patches. This is
VisionZip's own fine-tuning step, folded into the recipe: the LLM learns the short sequences a
budget gives, numbered contiguously, while the other batches keep the all-token skill."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class BudgetBatches(Sampler[list]):
    """Shuffled batches of indices 0..size-1. Each batch is, by a seeded coin, an all-token batch
    (plain indices) or with probability `fraction` a budget batch, whose keys are (index, tokens)
    with one budget drawn from `budgets` for the whole batch (one compressor per forward). The
    order depends only on the seed and how many epochs were drawn, so rebuilds repeat it."""

    def __init__(
        self, size: int, batch_size: int, fraction: float, budgets: Sequence[int], seed: int
    ):
        if not budgets and fraction > 0:
            raise ValueError("BudgetBatches: budget batches asked for, but no budgets given")
        self.size, self.batch_size, self.fraction = size, batch_size, fraction
        self.budgets, self.seed, self.epoch = list(budgets), seed, 0

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def __iter__(self) -> Iterator[list]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        coin = random.Random(f"budget-batches:{self.seed}:{self.epoch}")
        self.epoch += 1
        for start in range(0, self.size, self.batch_size):
            chunk = order[start : start + self.batch_size]
            if coin.random() < self.fraction:
                tokens = coin.choice(self.budgets)
                yield [(i, tokens) for i in chunk]
            else:
                yield chunk
