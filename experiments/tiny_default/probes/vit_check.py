"""Probe (issue 3): can the tiny CLIP tower learn per-patch shape alone (no other loss)?

    [V=mimetic|sincos|sincos,mimetic] [INTER=256] python vit_check.py LR LAYER ACT 1 [SIDE_LO SIDE_HI]

SIDE_LO/HI override the large-object size (fraction of the image). Logs: logs/{mim,mim128,mim_sc,small_obj,lr3}.log"""

# ruff: noqa: E402, E741  (an ad-hoc script, kept as it was run)

import os
import sys
import time

import torch
from torch import nn
from transformers import AutoConfig, CLIPVisionModel

from vzexp.data.shapes import COLORS, SHAPES, ShapesScenes
from vzexp.recipes.tiny_shapes.data import Collate, RenderedScenes, TowerTargets

torch.set_num_threads(1)
torch.manual_seed(0)
lr = float(sys.argv[1])
layer = int(sys.argv[2])
act = sys.argv[3]
ln_pre = sys.argv[4] == "1"
import vzexp.data.shapes as S

if len(sys.argv) > 5:
    S.LARGE_SIDE = (float(sys.argv[5]), float(sys.argv[6]))
sc = RenderedScenes.build(ShapesScenes(split="train", size=6000, seed=0))
ids = [(c, s) for c in COLORS for s in SHAPES]
data = TowerTargets(sc, ids, 4, 14)
col = Collate(0, [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
cfg = AutoConfig.for_model(
    "clip_vision_model",
    hidden_size=64,
    intermediate_size=int(os.environ.get("INTER", "256")),
    num_hidden_layers=4,
    num_attention_heads=4,
    image_size=112,
    patch_size=8,
    hidden_act=act,
)
tower = CLIPVisionModel._from_config(cfg, attn_implementation="sdpa")


def sincos_2d(grid, dim):
    q = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(q, dtype=torch.float) / q))
    ys, xs = torch.meshgrid(
        torch.arange(grid, dtype=torch.float), torch.arange(grid, dtype=torch.float), indexing="ij"
    )
    out = []
    for c in (ys.flatten(), xs.flatten()):
        a = c[:, None] * omega[None]
        out += [a.sin(), a.cos()]
    return torch.cat(out, 1)


if "sincos" in os.environ.get("V", ""):
    with torch.no_grad():
        e = (
            tower.embeddings.position_embedding.weight
            if hasattr(tower, "embeddings")
            else tower.vision_model.embeddings.position_embedding.weight
        )
        e[1:] = sincos_2d(14, 64) * float(os.environ.get("PS", "1"))
        e[0] = 0
if "mimetic" in os.environ.get("V", ""):
    layers = (
        tower.vision_model.encoder.layers
        if hasattr(tower, "vision_model")
        else tower.encoder.layers
    )
    d, H = 64, 4
    k = d // H
    with torch.no_grad():
        for lyr in layers:
            a = lyr.self_attn
            for h in range(H):
                Z = torch.randn(d, d) / d**0.5
                U, S, Vh = torch.linalg.svd(0.7 * Z + 0.7 * torch.eye(d))
                a.q_proj.weight[h * k : (h + 1) * k] = (U[:, :k] * S[:k].sqrt()).T
                a.k_proj.weight[h * k : (h + 1) * k] = (Vh.T[:, :k] * S[:k].sqrt()).T
            Z = torch.randn(d, d) / d**0.5
            U, S, Vh = torch.linalg.svd(0.4 * Z - 0.4 * torch.eye(d))
            a.v_proj.weight[:] = (U * S.sqrt()).T
            a.out_proj.weight[:] = Vh.T * S.sqrt()
head = nn.Linear(64, 5)
params = list(tower.parameters()) + list(head.parameters())
opt = torch.optim.AdamW(params, lr)
loader = torch.utils.data.DataLoader(data, batch_size=64, shuffle=True, collate_fn=col)
t = time.time()
step = 0
accs = []
for _ep in range(3):
    for b in loader:
        h = tower(pixel_values=b["pixel_values"], output_hidden_states=True).hidden_states[layer][
            :, 1:
        ]
        logits = head(h)
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
