"""Ad-hoc probe (issue 3): the tower stage alone. Run: python experiments/tiny_default/probes/tower_probe.py WIDTH LAYERS LR STEPS"""

import sys
import time

import torch
from transformers import AutoConfig, CLIPVisionModel

from vzexp.data.shapes import COLORS, SHAPES, ShapesScenes
from vzexp.engine.training import StepModule
from vzexp.recipes.tiny_shapes.data import Collate, RenderedScenes, TowerTargets
from vzexp.recipes.tiny_shapes.objectives import TowerPretrainer

width, layers, lr, steps = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
sc = RenderedScenes.build(ShapesScenes(split="train", size=6000, seed=0))
ids = [(c, s) for c in COLORS for s in SHAPES]
data = TowerTargets(sc, ids, 4, 14)
cfg = AutoConfig.for_model(
    "clip_vision_model",
    hidden_size=width,
    intermediate_size=2 * width,
    num_hidden_layers=layers,
    num_attention_heads=4,
    image_size=112,
    patch_size=8,
    hidden_act="quick_gelu",
)
tower = CLIPVisionModel._from_config(cfg, attn_implementation="sdpa")
m = StepModule(
    TowerPretrainer(tower, 24, 4, 6, 4, -2),
    lr=lr,
    weight_decay=0.05,
    warmup_steps=100,
    total_steps=steps,
)
logs = {}
m.log_dict = lambda d, **k: [logs.setdefault(a, []).append(float(b)) for a, b in d.items()]
[opt], [s] = m.configure_optimizers()
s = s["scheduler"]
loader = torch.utils.data.DataLoader(
    data,
    batch_size=64,
    shuffle=True,
    collate_fn=Collate(
        0, [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    ),
)
t = time.time()
step = 0
while step < steps:
    for b in loader:
        loss = m.training_step(b, 0)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        s.step()
        step += 1
        if step % 100 == 0:
            print(
                step,
                {k: round(sum(v[-50:]) / 50, 3) for k, v in logs.items()},
                round(time.time() - t),
                flush=True,
            )
        if step >= steps:
            break
