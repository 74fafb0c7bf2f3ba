"""Instruct-stage probe (issue 3), run from the repo root: a trained tower (from a recipe build) under a
fresh LLM + projector, no language/align stage, 4,000 training scenes.

    python experiments/tiny_default/probes/llm_probe.py MODEL_DIR std|mimetic|unfrozen LR STEPS

mimetic: mimetic init of the LLM's attention; unfrozen: the tower trains too.
Logs: logs/llm_std.log, llm_mim.log (500 steps), llm_std1000.log, llm_unfrozen.log (1,000-step schedule, stopped at 750/700)"""

# ruff: noqa: E402, E741  (an ad-hoc script, kept as it was run)

import os
import sys
import time

import torch

from vzexp.data.shapes import ShapesScenes
from vzexp.engine.training import StepModule
from vzexp.models.build import load_checkpoint
from vzexp.recipes.tiny_shapes.data import Collate, Conversations, RenderedScenes
from vzexp.recipes.tiny_shapes.mimetic_init import mimetic_init_
from vzexp.recipes.tiny_shapes.objectives import LlavaStage

torch.set_num_threads(int(os.environ.get("T", "1")))
path, variant, lr, steps = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
trained, _ = load_checkpoint(path)
from omegaconf import OmegaConf

from vzexp.models.build import assemble
from vzexp.recipes.tiny_shapes.data import CAPTION_PROMPT

src0 = ShapesScenes(split="train", size=2, seed=0)
enc = OmegaConf.to_container(OmegaConf.load("conf/encoder/tiny_clip.yaml"))
llm = OmegaConf.to_container(OmegaConf.load("conf/llm/tiny_llama.yaml"))
model, proc = assemble(
    enc, llm, [*src0.vocabulary(), *CAPTION_PROMPT.replace(".", " . ").split()], seed=0
)
model.model.vision_tower.load_state_dict(trained.model.vision_tower.state_dict())
if variant == "mimetic":
    layers = [l.self_attn for l in model.model.language_model.layers]
    mimetic_init_(
        layers, model.config.text_config.num_attention_heads, torch.Generator().manual_seed(0)
    )
sc = RenderedScenes.build(ShapesScenes(split="train", size=4000, seed=0))
data = Conversations(sc, proc, 196, "qa", 10, 0)
st = StepModule(
    LlavaStage(model, "instruct", ("projector", "llm")),
    lr=lr,
    weight_decay=0.0,
    warmup_steps=100,
    total_steps=steps,
)
if variant == "unfrozen":
    model.model.vision_tower.requires_grad_(True)
logs = []
st.log_dict = lambda d, **kw: logs.extend(float(v) for v in d.values())
[opt], [s] = st.configure_optimizers()
s = s["scheduler"]
im = proc.image_processor
loader = torch.utils.data.DataLoader(
    data,
    batch_size=16,
    shuffle=True,
    collate_fn=Collate(proc.tokenizer.pad_token_id, im.image_mean, im.image_std),
)
model.train()
t = time.time()
step = 0
while step < steps:
    for b in loader:
        loss = st.training_step(b, 0)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        s.step()
        step += 1
        if step % 50 == 0:
            print(variant, step, round(sum(logs[-50:]) / 50, 3), round(time.time() - t), flush=True)
        if step >= steps:
            break
