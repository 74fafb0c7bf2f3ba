"""Tower-stage probe (issue 3): the recipe's TowerPretrainer alone, held-out metrics 6 times per run.

    [PW=20] [T=threads] [CLIP=1] python tower_variants.py NAME POS BATCH LR STEPS [MLP_WIDTH] [PATCH]

NAME containing "mimetic" applies vzexp.recipes.tiny_shapes.mimetic_init; POS is learned or sincos; PW weights the
per-patch losses; CLIP=0 turns gradient clipping off. Logs: logs/{base,p16,m1,m2,mnc,pw5,pw20,pw20long}.log"""

# ruff: noqa: E402, E741  (an ad-hoc script, kept as it was run)

import os
import sys
import time

import torch
from transformers import AutoConfig, CLIPVisionModel

from vzexp.data.shapes import COLORS, SHAPES, ShapesScenes
from vzexp.engine.training import StepModule
from vzexp.recipes.tiny_shapes.data import Collate, RenderedScenes, TowerTargets
from vzexp.recipes.tiny_shapes.objectives import TowerPretrainer

name, pos, bs, lr, steps = (
    sys.argv[1],
    sys.argv[2],
    int(sys.argv[3]),
    float(sys.argv[4]),
    int(sys.argv[5]),
)
inter = int(sys.argv[6]) if len(sys.argv) > 6 else 128
patch = int(sys.argv[7]) if len(sys.argv) > 7 else 8
grid = 112 // patch
torch.set_num_threads(int(os.environ.get("T", "1")))
torch.manual_seed(0)
sc = RenderedScenes.build(ShapesScenes(split="train", size=10000, seed=0))
held = RenderedScenes.build(ShapesScenes(split="test", size=500, seed=0))
ids = [(c, s) for c in COLORS for s in SHAPES]
data = TowerTargets(sc, ids, 4, grid)
hdata = TowerTargets(held, ids, 4, grid)
cfg = AutoConfig.for_model(
    "clip_vision_model",
    hidden_size=64,
    intermediate_size=inter,
    num_hidden_layers=4,
    num_attention_heads=4,
    image_size=112,
    patch_size=patch,
    hidden_act="quick_gelu",
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


from vzexp.recipes.tiny_shapes.mimetic_init import mimetic_init_clip_tower

if "mimetic" in name:
    mimetic_init_clip_tower(tower, 0)
if pos == "sincos":
    emb = tower.embeddings.position_embedding.weight
    with torch.no_grad():
        emb[1:] = sincos_2d(grid, 64) * 0.5
        emb[0] = 0
m = StepModule(
    TowerPretrainer(tower, 24, 4, 6, 4, -2, patch_weight=float(os.environ.get("PW", "1"))),
    lr=lr,
    weight_decay=0.05,
    warmup_steps=100,
    total_steps=steps,
)
logs = {}
m.log_dict = lambda d, **k: [logs.setdefault(a, []).append(float(b)) for a, b in d.items()]
[opt], [s] = m.configure_optimizers()
s = s["scheduler"]
col = Collate(0, [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
loader = torch.utils.data.DataLoader(data, batch_size=bs, shuffle=True, collate_fn=col)
hl = torch.utils.data.DataLoader(hdata, batch_size=100, collate_fn=col)


def held_eval():
    m.eval()
    logs.clear()
    with torch.no_grad():
        for b in hl:
            m.training_step(b, 0)
    m.train()
    return {k.split("/")[1]: round(sum(v) / len(v), 3) for k, v in logs.items()}


t = time.time()
step = 0
while step < steps:
    for b in loader:
        loss = m.training_step(b, 0)
        opt.zero_grad()
        loss.backward()
        if os.environ.get("CLIP", "1") == "1":
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        s.step()
        step += 1
        if step % (steps // 6) == 0:
            print(name, step, held_eval(), round(time.time() - t), flush=True)
        if step >= steps:
            break
