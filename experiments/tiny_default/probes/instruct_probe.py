"""Ad-hoc probe (issue 3): instruct-stage learning on a random tower. Run from the repo root:
python experiments/tiny_default/probes/instruct_probe.py <types|all> <lr> [steps]"""

import sys
import time

import torch
from omegaconf import OmegaConf

from vzexp.data.shapes import ShapesScenes
from vzexp.engine.training import StepModule
from vzexp.models.build import assemble
from vzexp.recipes.tiny_shapes.data import (
    CAPTION_PROMPT,
    Collate,
    Conversations,
    RenderedScenes,
)
from vzexp.recipes.tiny_shapes.objectives import LlavaStage

types = sys.argv[1].split(",") if len(sys.argv) > 1 and sys.argv[1] != "all" else None
lr = float(sys.argv[2]) if len(sys.argv) > 2 else 1e-3
torch.manual_seed(0)
src = ShapesScenes(split="train", size=3000, seed=0)
sc = RenderedScenes.build(src)
if types:
    sc.qas = [[q for q in qs if q.type in types] or qs[:1] for qs in sc.qas]
enc = OmegaConf.to_container(OmegaConf.load("conf/encoder/tiny_clip.yaml"))
llm = OmegaConf.to_container(OmegaConf.load("conf/llm/tiny_llama.yaml"))
model, proc = assemble(enc, llm, [*src.vocabulary(), *CAPTION_PROMPT.replace(".", " . ").split()])
data = Conversations(sc, proc, 196, "qa", 10, 0)
col = Collate(
    proc.tokenizer.pad_token_id, proc.image_processor.image_mean, proc.image_processor.image_std
)
loader = torch.utils.data.DataLoader(data, batch_size=16, shuffle=True, collate_fn=col)
m = StepModule(
    LlavaStage(model, "x", ("projector", "llm")),
    lr=lr,
    weight_decay=0.0,
    warmup_steps=20,
    total_steps=100000,
)
m.log_dict = lambda *a, **k: None
m.train()
[opt], [sch] = m.configure_optimizers()
sched = sch["scheduler"]
t = time.time()
run = []
for step, batch in enumerate(loader):
    loss = m.training_step(batch, 0)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    sched.step()
    run.append(loss.item())
    if step % 25 == 24:
        print(step + 1, round(sum(run) / len(run), 3), round(time.time() - t), flush=True)
        run = []
    if step == int(sys.argv[3] if len(sys.argv) > 3 else 299):
        break
model.eval()
from vzexp.data.scoring import exact_match  # noqa: E402
from vzexp.data.shapes import ShapesQA  # noqa: E402
from vzexp.engine.evaluate import Collator  # noqa: E402

test = ShapesQA(split="test", size=320, seed=0)
acc = {}
for s0 in range(0, 320, 32):
    samples = [test[i] for i in range(s0, s0 + 32)]
    b = Collator(proc)(samples)
    n = b["inputs"]["input_ids"].shape[1]
    with torch.no_grad():
        out = model.generate(**b["inputs"], max_new_tokens=3, do_sample=False)
    for t, s in zip(proc.tokenizer.batch_decode(out[:, n:], skip_special_tokens=True), samples):
        acc.setdefault(s.meta["type"], []).append(exact_match(t, s.answer))
print(
    {k: round(sum(v) / len(v), 2) for k, v in acc.items()},
    "overall",
    round(sum(sum(v) for v in acc.values()) / 320, 3),
)
