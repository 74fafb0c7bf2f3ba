"""Shared helpers for the unit tests.

`visionzip_reference` is an independent, deliberately naive implementation of VisionZip written
from the text of shared docs/visionzip.md (per image, plain Python loops and floats), used to
check the vectorised implementation in vzexp.compress.visionzip.
"""

from __future__ import annotations

import math

import pytest
import torch


def reference_visionzip(hidden, keys, scores, has_cls, dominant, contextual):
    """hidden (B, T, d), keys (B, T, hk), scores (B, T) (CLS attention summed over heads, or the
    attention received for towers without CLS). Returns (index (B, D) long, tokens (B, D+C, d),
    assignment list of lists (or None when contextual == 0))."""
    batch, t, d = hidden.shape
    all_index, all_tokens, all_assignment = [], [], []
    for b in range(batch):
        h = hidden[b].tolist()
        k = keys[b].tolist()
        s = scores[b].tolist()

        # Step 1: dominant tokens. Rank by score, highest first (stable for equal scores).
        if has_cls:
            candidates = list(range(1, t))
            ranked = sorted(candidates, key=lambda p: -s[p])
            index = [0] + ranked[: dominant - 1]
        else:
            ranked = sorted(range(t), key=lambda p: -s[p])
            index = ranked[:dominant]
        kept = set(index)
        tokens = [list(h[i]) for i in range(t) if i in kept]  # ascending sequence order

        # Step 2: contextual tokens.
        assignment = None
        if contextual > 0:
            rest = [i for i in range(t) if i not in kept]
            m = len(rest)
            unit = {}
            for i in rest:
                norm = math.sqrt(sum(x * x for x in k[i]))
                unit[i] = [x / norm for x in k[i]]
            step = max(1, m // contextual)
            target_positions = []
            pos = 0
            while pos < m and len(target_positions) < contextual:
                target_positions.append(pos)
                pos += step
            targets = [rest[p] for p in target_positions]
            target_set = set(targets)
            members = [[] for _ in targets]
            assignment = []
            for i in rest:
                if i in target_set:
                    continue
                best_j, best_sim = 0, None
                for j, tgt in enumerate(targets):
                    sim = sum(a * c for a, c in zip(unit[i], unit[tgt]))
                    if best_sim is None or sim > best_sim:  # strict: ties stay at the lowest j
                        best_j, best_sim = j, sim
                members[best_j].append(i)
                assignment.append(best_j)
            for j, tgt in enumerate(targets):
                total = [0.0] * d
                for i in members[j]:
                    total = [a + c for a, c in zip(total, h[i])]
                count = max(1, len(members[j]))
                tokens.append([h[tgt][c] + total[c] / count for c in range(d)])
        all_index.append(index)
        all_tokens.append(tokens)
        all_assignment.append(assignment)
    return (
        torch.tensor(all_index, dtype=torch.long),
        torch.tensor(all_tokens, dtype=hidden.dtype),
        None if contextual == 0 else all_assignment,
    )


@pytest.fixture
def visionzip_reference():
    return reference_visionzip
