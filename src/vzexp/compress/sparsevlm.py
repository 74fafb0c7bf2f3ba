"""SparseVLM (Zhang et al., ICML 2025): text-guided pruning of visual tokens inside the LLM, with
the dropped tokens partly recycled.

As the reference (Gumpest/SparseVLMs, V1.0):
  * raters, once, from the LLM's input embeddings: for the text after the image T and the visual
    tokens V, s = mean over V of softmax over T of V T^T (raw dot products); the raters are the
    text tokens with s above its mean;
  * at the outputs of LLaVA-1.5's layers 2, 6 and 15 (before layers 3, 7, 16), the visual tokens
    are ranked by that layer's attention from the raters (mean over heads and raters), the top
    ones kept in order;
  * recycling: of the dropped tokens, the int(0.3 n) + 1 most relevant are clustered (DPC-kNN,
    int(m / 10) + 1 clusters) and each cluster's plain mean is appended after the kept visual
    tokens; positions are renumbered contiguously.
The reference's token counts are fixed lists for LLaVA-1.5 whose AVERAGE over the 32 layers is the
budget (`keep: [66, 30, 17]` for 64). Here, with `keep: null`, `tokens` is what the last pruning
step leaves (recycled tokens included), reached geometrically from all visual tokens, and
`layers: null` scales the reference's positions to the LLM's depth."""

from __future__ import annotations

import torch
from torch import Tensor

from vzexp.compress.llm_side import LLMPruner, Positions, PrunePoint, PruneState
from vzexp.compress.pdrop import scaled_layers
from vzexp.errors import ConfigError

REFERENCE_DEPTH = 32
REFERENCE_LAYERS = (3, 7, 16)  # pruning the outputs of layers 2, 6 and 15


def rater_queries(embeds: Tensor, visual: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """(B, Q) rater positions and (B, Q) 0/1 weights (rows padded to the longest)."""
    chosen = []
    for e, vis, ok in zip(embeds, visual, valid):
        visual_pos = vis.nonzero().flatten()
        text_pos = torch.arange(int(visual_pos[-1]) + 1, len(e), device=e.device)
        text_pos = text_pos[ok[text_pos]]
        s = (e[visual_pos].float() @ e[text_pos].float().T).softmax(dim=1).mean(dim=0)
        raters = text_pos[s > s.mean()]
        chosen.append(raters if len(raters) else text_pos[-1:])
    width = max(len(c) for c in chosen)
    queries = torch.stack([torch.cat([c, c[-1:].expand(width - len(c))]) for c in chosen])
    weights = torch.stack(
        [torch.arange(width, device=embeds.device) < len(c) for c in chosen]
    ).float()
    return queries, weights


def dpc_knn_merge(x: Tensor, clusters: int) -> Tensor:
    """Density-peak clustering with k = `clusters` nearest neighbours, then each cluster's mean.
    x (B, m, d) -> (B, clusters, d)."""
    b, m, d = x.shape
    dist = torch.cdist(x.float(), x.float()) / d**0.5  # (B, m, m)
    k = min(clusters, m)
    nearest = dist.topk(k, dim=-1, largest=False).values
    # the reference adds tiny random noise to break density ties; a seeded generator keeps
    # runs reproducible
    noise = torch.rand(b, m, generator=torch.Generator().manual_seed(0)).to(x.device) * 1e-6
    density = (-(nearest**2).mean(dim=-1)).exp() + noise
    higher = density.unsqueeze(1) > density.unsqueeze(2)  # [i, j]: j denser than i
    delta = dist.masked_fill(~higher, float("inf")).amin(dim=-1)
    densest = delta.isinf()
    delta = torch.where(densest, dist.amax(dim=-1), delta)
    centres = (delta * density).topk(clusters, dim=-1).indices  # (B, C)
    to_centre = dist.gather(2, centres.unsqueeze(1).expand(-1, m, -1))  # (B, m, C)
    assign = to_centre.argmin(dim=-1)
    assign.scatter_(1, centres, torch.arange(clusters, device=x.device).expand(b, -1))
    one_hot = torch.nn.functional.one_hot(assign, clusters).to(x.dtype)  # (B, m, C)
    return torch.bmm(one_hot.transpose(1, 2), x) / one_hot.sum(dim=1).unsqueeze(-1).clamp(min=1)


class SparseVLM(LLMPruner):
    name = "sparsevlm"

    def __init__(
        self,
        budget: int | None = None,
        layer: int = -2,
        layers: list[int] | None = None,
        keep: list[int] | None = None,
        recycle_ratio: float = 0.3,
        positions: Positions = "compact",
    ):
        super().__init__(budget, layer)
        if not 0.0 <= recycle_ratio <= 1.0:
            raise ConfigError("compressor.recycle_ratio", recycle_ratio, "a fraction in [0, 1]")
        if keep is not None and layers is not None and len(keep) != len(layers):
            raise ConfigError("compressor.keep", keep, f"one count per layer of {list(layers)}")
        self.layers, self.keep, self.recycle_ratio = layers, keep, recycle_ratio
        self.positions = positions

    def schedule_given(self) -> bool:
        return self.keep is not None

    def plan(self, num_visual: int, depth: int) -> list[PrunePoint]:
        if self.layers:
            layers = list(self.layers)
        else:
            fractions = [layer / REFERENCE_DEPTH for layer in REFERENCE_LAYERS]
            layers = scaled_layers(fractions, depth)
        if self.keep is not None:
            keeps = list(self.keep)[: len(layers)]
        else:
            n = len(layers)
            keeps = [
                round(num_visual * (self.budget / num_visual) ** (s / n)) for s in range(1, n + 1)
            ]
            keeps[-1] = self.budget
        return [PrunePoint(layer=at, keep=k, score_layer=at - 1) for at, k in zip(layers, keeps)]

    def query_positions(self, state: PruneState, input_embeds: Tensor):
        return rater_queries(input_embeds, state.visual, state.valid)

    def _recycled_from(self, dropped: int) -> int:
        return int(self.recycle_ratio * dropped) + 1

    def recycled_count(self, dropped: int) -> int:
        if self.recycle_ratio == 0 or dropped <= 0:
            return 0
        return int(self._recycled_from(dropped) / 10) + 1

    def recycle(self, hidden: Tensor, relevance: Tensor, count: int) -> Tensor:
        m = min(self._recycled_from(hidden.shape[1]), hidden.shape[1])
        top = relevance.topk(m, dim=1).indices
        chosen = hidden.gather(1, top.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        return dpc_knn_merge(chosen, min(count, m))
