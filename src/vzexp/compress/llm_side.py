"""LLM-side strategies (FastV, PyramidDrop, SparseVLM): every visual token enters the LLM, and
visual tokens are dropped between decoder layers.

`LLMPruner` is the common machinery. A strategy gives a plan (where to prune, how many visual
tokens to keep, whose attention ranks them, which queries), and optionally tokens to recycle. At
install, forward pre-hooks go on the LlavaModel (to see the prompt's image positions and padding)
and on the Llama decoder layers. In the prefill:
  * at a score layer, the attention rows the strategy needs are recomputed from that layer's own
    q/k projections (RoPE, causal + padding mask, fp32 softmax), for the chosen queries only, so
    no layer runs eager attention or returns attention maps;
  * at a prune layer, the hidden states are gathered to the kept tokens (+ recycled ones), and
    from there on every layer gets the matching position embeddings and attention mask;
  * kept tokens keep their original positions (FastV) or are renumbered contiguously
    (positions=compact: PyramidDrop, SparseVLM), as each reference does.
In decoding, each layer's KV cache holds only the tokens it kept: the mask is cut to them and,
with compact positions, the new token's position is shifted by the tokens removed before it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

from vzexp.compress.base import CompressionResult, Compressor
from vzexp.compress.budget import check_tokens
from vzexp.encoders.capture import LayerCapture
from vzexp.errors import ConfigError

Positions = Literal["original", "compact"]


@dataclass
class PrunePoint:
    layer: int  # prune the visual tokens before this decoder layer (0-indexed) runs
    keep: int  # visual tokens left after it (recycled ones included)
    score_layer: int  # the decoder layer whose attention ranks them (layer or layer - 1)


@dataclass
class PruneState:
    """One generate() call. Shapes are (B, L) over the current (pruned) sequence."""

    active: bool = False
    prefill: bool = False
    index: Tensor | None = None  # original position of each current token (-1: recycled)
    visual: Tensor | None = None  # is a visual token
    valid: Tensor | None = None  # a real token (not left padding)
    positions: Tensor | None = None  # position ids for RoPE
    queries: Tensor | None = None  # (B, Q) query positions in the ORIGINAL sequence
    query_weights: Tensor | None = None  # (B, Q) weights of the queries (padding rows: 0)
    scores: dict[int, Tensor] = field(default_factory=dict)  # prune layer -> (B, L) relevance
    pruned: bool = False
    per_layer: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)  # valid, removed
    visual_per_layer: list[int] = field(default_factory=list)


def decoder_attention_scores(
    layer, hidden: Tensor, cos: Tensor, sin: Tensor, queries: Tensor, valid: Tensor, weights
):
    """Mean over heads and (weighted) queries of one decoder layer's attention probabilities.
    hidden (B, L, d) the layer's input; cos/sin (B, L, hd); queries (B, Q) current positions;
    valid (B, L) keys that are real tokens; weights (B, Q) or None. Returns (B, L) in fp32."""
    attn = layer.self_attn
    h = layer.input_layernorm(hidden)
    b, length, _ = h.shape
    rows = torch.arange(b, device=h.device).unsqueeze(1)
    cos, sin = cos.expand(b, -1, -1), sin.expand(b, -1, -1)  # position ids may be shared (1, L)
    q = attn.q_proj(h[rows, queries]).view(b, queries.shape[1], -1, attn.head_dim).transpose(1, 2)
    k = attn.k_proj(h).view(b, length, -1, attn.head_dim).transpose(1, 2)
    q = apply_rotary_pos_emb(q, q, cos[rows, queries], sin[rows, queries])[0]
    k = apply_rotary_pos_emb(k, k, cos, sin)[0]
    k = repeat_kv(k, q.shape[1] // k.shape[1])
    logits = torch.einsum("bhqd,bhkd->bhqk", q.float(), k.float()) * attn.scaling
    causal = torch.arange(length, device=h.device).view(1, 1, length) <= queries.unsqueeze(-1)
    allowed = causal & valid.unsqueeze(1)  # (B, Q, L)
    logits = logits.masked_fill(~allowed.unsqueeze(1), -float("inf"))
    per_query = logits.softmax(dim=-1).mean(dim=1)  # (B, Q, L)
    if weights is None:
        return per_query.mean(dim=1)
    weights = weights.float().unsqueeze(-1)
    return (per_query * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-12)


def _mask_like(incoming, allowed: Tensor):
    """A 4D mask in the incoming format (bool, or additive float) from allowed (B, Q, K)."""
    if incoming is None or incoming.dtype == torch.bool:
        return allowed.unsqueeze(1)
    zero = torch.zeros((), dtype=incoming.dtype, device=allowed.device)
    low = torch.tensor(torch.finfo(incoming.dtype).min, dtype=incoming.dtype, device=allowed.device)
    return torch.where(allowed, zero, low).unsqueeze(1)


class LLMPruner(Compressor):
    """Base class: the encoder side passes every token (the model's own feature select)."""

    kind = "llm"
    positions: str = "original"
    layer_key: str = "compressor.layers"  # the config key of the LLM layers, for errors

    def __init__(self, budget: int | None = None, layer: int = -2):
        super().__init__(layer)
        self.budget = budget
        self.state = PruneState()
        self._handles: list = []
        self._lm = None

    # ---- what a strategy defines ------------------------------------------------------------
    def plan(self, num_visual: int, depth: int) -> list[PrunePoint]:
        raise NotImplementedError

    def query_positions(self, state: PruneState, input_embeds: Tensor):
        """(B, Q) query positions (original sequence) whose attention ranks the visual tokens,
        and their (B, Q) weights or None: the last prompt token by default."""
        b, length = state.valid.shape
        last = torch.full((b, 1), length - 1, dtype=torch.long, device=state.valid.device)
        return last, None

    def recycled_count(self, dropped: int) -> int:
        """How many tokens `recycle` makes from `dropped` visual tokens (0: no recycling)."""
        return 0

    def recycle(self, hidden: Tensor, relevance: Tensor, count: int) -> Tensor:
        """`count` extra tokens (B, count, d) made from the dropped visual tokens:
        hidden (B, V, d) and relevance (B, V) of the dropped ones."""
        raise NotImplementedError

    # ---- Compressor interface -----------------------------------------------------------------
    def schedule_given(self) -> bool:
        """True when the strategy's own parameters fix its counts (then `tokens` is unused)."""
        return False

    def output_tokens(self, num_patches: int, has_cls: bool) -> int:
        if not self.schedule_given():
            note = ": visual tokens left inside the LLM"
            check_tokens(self.budget, 1, num_patches, num_patches, False, note)
        return num_patches  # every visual token enters the LLM

    def compress(self, capture: LayerCapture) -> CompressionResult:
        raise ConfigError(
            "compressor", self.name, "an encoder-side strategy here (this one acts inside the LLM)"
        )

    # ---- hooks --------------------------------------------------------------------------------
    def attach(self, model, num_visual: int, stats) -> None:
        """Install the hooks on a LlavaForConditionalGeneration whose LLM is Llama-like."""
        self.detach()
        lm = model.model.language_model
        layers = getattr(lm, "layers", None)
        if layers is None or not hasattr(layers[0], "self_attn"):
            raise ConfigError(
                "compressor",
                self.name,
                "an LLM with Llama-style decoder layers (.layers[i].self_attn)",
            )
        depth = len(layers)
        self.points = self.plan(num_visual, depth)
        for p in self.points:
            if not 1 <= p.layer <= depth - 1:
                raise ConfigError(
                    self.layer_key,
                    p.layer,
                    f"an LLM layer in 1..{depth - 1} (this LLM has {depth})",
                )
        self._lm, self._stats, self._num_visual = lm, stats, num_visual
        self._depth = depth
        image_id = model.config.image_token_id

        def on_model(_module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            state = self.state
            if ids is None:
                state.active = False
                return None
            if ids.shape[1] > 1:  # prefill: a fresh state for this prompt
                mask = kwargs.get("attention_mask")
                valid = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
                self.state = PruneState(
                    active=True,
                    prefill=True,
                    index=torch.arange(ids.shape[1], device=ids.device).expand_as(ids),
                    visual=ids == image_id,
                    valid=valid,
                )
                counts = self.state.visual.sum(dim=1)
                if not bool((counts == counts[0]).all()):
                    raise ValueError(
                        "every prompt of a batch must hold the same number of visual tokens"
                    )
            else:
                state.prefill = False
            return None

        self._handles.append(model.model.register_forward_pre_hook(on_model, with_kwargs=True))
        for i, layer in enumerate(layers):
            self._handles.append(
                layer.register_forward_pre_hook(self._layer_hook(i, layer), with_kwargs=True)
            )

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self.state = PruneState()

    def _layer_hook(self, i: int, layer):
        def hook(_module, args, kwargs):
            state = self.state
            if not state.active:
                return None
            hidden = args[0] if args else kwargs["hidden_states"]
            if state.prefill:
                hidden, kwargs = self._prefill(i, layer, hidden, kwargs)
            elif i in state.per_layer:
                kwargs = self._decode(i, hidden, kwargs)
            else:
                return None
            if args:
                return (hidden, *args[1:]), kwargs
            kwargs["hidden_states"] = hidden
            return args, kwargs

        return hook

    def _rope(self, hidden: Tensor, positions: Tensor):
        return self._lm.rotary_emb(hidden, position_ids=positions)

    def _prefill(self, i: int, layer, hidden: Tensor, kwargs: dict):
        state = self.state
        start = time.perf_counter()
        if i == 0:
            full_pos = kwargs.get("position_ids")
            b, length = state.valid.shape
            if full_pos is None:
                full_pos = torch.arange(length, device=hidden.device).expand(b, -1)
            state.positions = full_pos.expand(b, -1).clone()
            state.queries, state.query_weights = self.query_positions(state, hidden)
            state.visual_per_layer = []
        cos, sin = (
            kwargs["position_embeddings"]
            if not state.pruned
            else self._rope(hidden, state.positions)
        )
        for p in self.points:
            if p.score_layer == i:
                # the strategy's queries, located in the current sequence
                current = (
                    (state.index.unsqueeze(1) == state.queries.unsqueeze(-1)).float().argmax(-1)
                )
                state.scores[p.layer] = decoder_attention_scores(
                    layer, hidden, cos, sin, current, state.valid, state.query_weights
                )
        point = next((p for p in self.points if p.layer == i), None)
        if point is not None:
            hidden = self._prune(point, hidden)
            state.pruned = True
        if state.pruned:
            kwargs = dict(kwargs)
            kwargs["position_embeddings"] = self._rope(hidden, state.positions)
            length = hidden.shape[1]
            causal = torch.ones(length, length, dtype=torch.bool, device=hidden.device).tril()
            # padding queries attend to themselves: a row with no key at all would give NaN
            self_only = torch.eye(length, dtype=torch.bool, device=hidden.device)
            allowed = (causal.unsqueeze(0) & state.valid.unsqueeze(1)) | self_only
            incoming = kwargs.get("attention_mask")
            all_valid = bool(state.valid.all())
            kwargs["attention_mask"] = (
                None if incoming is None and all_valid else _mask_like(incoming, allowed)
            )
            removed = self._num_visual - state.visual.sum(dim=1, keepdim=True)
            state.per_layer[i] = (state.valid.clone(), removed)
        state.visual_per_layer.append(int(state.visual[0].sum()))
        self._stats.compress_seconds += time.perf_counter() - start
        if i == self._depth - 1:
            self._stats.llm_visual_tokens += (
                sum(state.visual_per_layer) / self._depth * hidden.shape[0]
            )
        return hidden, kwargs

    def _prune(self, point: PrunePoint, hidden: Tensor) -> Tensor:
        state = self.state
        b, length, d = hidden.shape
        relevance = state.scores.pop(point.layer)  # (B, L)
        visual_pos = state.visual.nonzero()[:, 1].view(b, -1)  # (B, V) current positions
        v = visual_pos.shape[1]
        recycled_n = self.recycled_count(v - point.keep) if point.keep < v else 0
        keep = min(point.keep - recycled_n, v)
        rel_visual = relevance.gather(1, visual_pos)
        chosen = rel_visual.topk(keep, dim=1).indices.sort(dim=1).values
        keep_visual = torch.zeros(b, v, dtype=torch.bool, device=hidden.device)
        keep_visual.scatter_(1, chosen, True)
        extra = None
        if recycled_n:
            dropped = ~keep_visual
            dropped_pos = visual_pos[dropped].view(b, -1)
            extra = self.recycle(
                hidden.gather(1, dropped_pos.unsqueeze(-1).expand(-1, -1, d)),
                rel_visual[dropped].view(b, -1),
                recycled_n,
            )
        keep_seq = ~state.visual
        keep_seq.scatter_(1, visual_pos, keep_visual)
        # New order: tokens before the image, kept visual tokens, recycled tokens, the rest.
        last_visual = visual_pos[:, -1:]  # recycled tokens go right after the image block
        rows = []
        for r in range(b):
            kept = keep_seq[r].nonzero().flatten()
            before = kept[kept <= last_visual[r]]
            after = kept[kept > last_visual[r]]
            n_extra = 0 if extra is None else extra.shape[1]
            synthetic = torch.arange(length, length + n_extra, device=hidden.device)
            rows.append(torch.cat([before, synthetic, after]))
        order = torch.stack(rows)
        source = hidden if extra is None else torch.cat([hidden, extra.to(hidden.dtype)], dim=1)
        hidden = source.gather(1, order.unsqueeze(-1).expand(-1, -1, d))

        def follow(values: Tensor, fill) -> Tensor:
            pad = torch.full(
                (b, source.shape[1] - length), fill, dtype=values.dtype, device=values.device
            )
            return torch.cat([values, pad], dim=1).gather(1, order)

        # the first real token's position: compact numbering starts there
        first = state.positions.masked_fill(~state.valid, 1 << 30).amin(dim=1, keepdim=True)
        state.index = follow(state.index, -1)
        state.visual = follow(state.visual, True)
        state.valid = follow(state.valid, True)
        if self.positions == "compact":
            rank = state.valid.long().cumsum(dim=1) - 1
            state.positions = torch.where(state.valid, first + rank, torch.zeros_like(rank))
        else:
            state.positions = follow(state.positions, 0)
            if extra is not None:  # recycled tokens take the position of the image's last token
                last = state.positions.masked_fill(~state.visual | (state.index < 0), -1).amax(
                    1, keepdim=True
                )
                state.positions = torch.where(state.index < 0, last, state.positions)
        return hidden

    def _decode(self, i: int, hidden: Tensor, kwargs: dict) -> dict:
        state = self.state
        valid, removed = state.per_layer[i]
        kwargs = dict(kwargs)
        cache = kwargs.get("cache")
        q = hidden.shape[1]
        past = cache.get_seq_length(i) if cache is not None else valid.shape[1]
        incoming = kwargs.get("attention_mask")
        if incoming is not None or not bool(valid.all()):
            new = torch.ones(
                valid.shape[0], past - valid.shape[1] + q, dtype=torch.bool, device=valid.device
            )
            keys = torch.cat([valid, new], dim=1)  # (B, past + q)
            causal = torch.ones(q, past + q, dtype=torch.bool, device=valid.device).tril(past)
            kwargs["attention_mask"] = _mask_like(incoming, causal.unsqueeze(0) & keys.unsqueeze(1))
        if self.positions == "compact":
            positions = kwargs.get("position_ids")
            if positions is None:
                positions = torch.arange(past, past + q, device=hidden.device).unsqueeze(0)
            positions = positions.expand(valid.shape[0], -1) - removed
            kwargs["position_embeddings"] = self._rope(hidden, positions)
        return kwargs
