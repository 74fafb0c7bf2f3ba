"""Probe (issue 3): the per-patch shape labels are learnable: a CNN with the ViT's 8x8/8 patchify and
three KxK convolutions.

    python cnn_check.py          # K=3, 2 threads (log: logs/cnn_check.log)
    python cnn_check.py local    # K=1: only the patch itself, the ceiling of patch-local features,
                                 # 1 thread (log: logs/cnn_local.log)"""

# ruff: noqa: E402, E741  (an ad-hoc script, kept as it was run)

import sys
import time

import torch
from torch import nn

from vzexp.data.shapes import COLORS, SHAPES, ShapesScenes
from vzexp.recipes.tiny_shapes.data import Collate, RenderedScenes, TowerTargets

LOCAL = sys.argv[1:] == ["local"]
torch.set_num_threads(1 if LOCAL else 2)
torch.manual_seed(0)
sc = RenderedScenes.build(ShapesScenes(split="train", size=6000, seed=0))
ids = [(c, s) for c in COLORS for s in SHAPES]
data = TowerTargets(sc, ids, 4, 14)
col = Collate(0, [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
net = nn.Sequential(
    nn.Conv2d(3, 64, 8, 8),
    nn.ReLU(),
    *[
        m
        for _ in range(3)
        for m in (nn.Conv2d(64, 64, 1) if LOCAL else nn.Conv2d(64, 64, 3, padding=1), nn.ReLU())
    ],
    nn.Conv2d(64, 5, 1),
)
opt = torch.optim.AdamW(net.parameters(), 2e-3)
loader = torch.utils.data.DataLoader(data, batch_size=64, shuffle=True, collate_fn=col)
t = time.time()
step = 0
accs = []
for _ep in range(3):
    for b in loader:
        logits = net(b["pixel_values"]).flatten(2).transpose(1, 2)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), b["patch_shape"].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        on = b["patch_shape"] > 0
        accs.append((logits.argmax(-1)[on] == b["patch_shape"][on]).float().mean().item())
        if step % 50 == 0:
            print(
                step,
                round(loss.item(), 3),
                round(sum(accs[-50:]) / 50, 3),
                round(time.time() - t),
                flush=True,
            )
