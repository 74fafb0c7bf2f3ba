"""TrunkCache: what the frozen LLM layers hand to the trained ones, per training sample, kept
across epochs.

With the projector frozen (`task.tune_projector=false`) everything below the trained last layers
is a fixed function of the sample: its tokens and its cached visual tokens. So the hidden states
entering those layers are recorded in the first epoch and fed back in later ones, where a step
runs the trained layers alone, forward and backward (SmolLM2 with 4 of 30 layers trained: the
other 26 layers' forward pass, most of a step, is skipped).

Samples are stored unpadded (right padding and the attention mask keep a sample's states
independent of its batch), with their token ids, so a sample whose tokens changed is recomputed,
never replayed."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class TrunkCache:
    def __init__(self, language_model: nn.Module, first_trained: int):
        if first_trained < 1:
            raise ValueError("a trunk needs at least one frozen layer below the trained ones")
        self.language_model = language_model
        self.first_trained = first_trained
        self.states: dict[int, torch.Tensor] = {}
        self.token_ids: dict[int, torch.Tensor] = {}

    @staticmethod
    def _lengths(batch: dict[str, torch.Tensor]) -> list[int]:
        return batch["attention_mask"].sum(dim=1).tolist()

    def covers(self, batch: dict[str, torch.Tensor]) -> bool:
        """Whether every sample of the batch is stored, with the same tokens."""
        for i, (index, n) in enumerate(zip(batch["index"].tolist(), self._lengths(batch))):
            ids = self.token_ids.get(index)
            if ids is None or not torch.equal(ids, batch["input_ids"][i, :n]):
                return False
        return True

    @contextmanager
    def recording(self, batch: dict[str, torch.Tensor]):
        """Store, for each sample of the batch, the output of the last frozen layer during the
        forward pass run inside this block."""
        lengths = self._lengths(batch)

        def store(_module, _inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            for i, (index, n) in enumerate(zip(batch["index"].tolist(), lengths)):
                # a copy: a view would keep the whole batch's tensor alive
                self.states[index] = hidden[i, :n].detach().clone()
                self.token_ids[index] = batch["input_ids"][i, :n].clone()

        last_frozen = self.language_model.layers[self.first_trained - 1]
        handle = last_frozen.register_forward_hook(store)
        try:
            yield
        finally:
            handle.remove()

    def replayed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The stored states of the batch's samples, right-padded to its length (B, T, d)."""
        rows = [self.states[index] for index in batch["index"].tolist()]
        out = rows[0].new_zeros(len(rows), batch["input_ids"].shape[1], rows[0].shape[-1])
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return out

    @contextmanager
    def trained_layers_only(self):
        """The language model with its frozen layers taken out for the block: fed the replayed
        states as its input embeddings, it runs the trained layers, then the final norm."""
        layers = self.language_model.layers
        self.language_model.layers = nn.ModuleList(list(layers)[self.first_trained :])
        try:
            yield
        finally:
            self.language_model.layers = layers
