"""Instruct-stage probe with accuracy (issue 3): does the LLM learn to bind the question to the
visual tokens? A trained tower (from a recipe build) is frozen and its layer -2 patch features are
cached once; a fresh projector + LLM trains on multi-turn shapes QA; every EVAL steps the
teacher-forced first answer token is scored per question type on 400 test questions.

    python experiments/tiny_default/probes/binding_probe.py MODEL_DIR NAME STEPS '{"llm": {...}}'

The JSON overrides the LLM config (e.g. {"rope_theta": 1e6}) and training settings
(lr, batch, turns, scenes, warmup; "select": "full" shows the LLM the CLS token too, as
vision_feature_select_strategy=full does). T=threads. Logs: logs/bind_*.log"""

# ruff: noqa: E402, E741  (an ad-hoc script, kept as it was run)

import json
import os
import sys
import time
from collections import defaultdict

import torch
from omegaconf import OmegaConf

from vzexp.data.conversation import IGNORE_INDEX
from vzexp.data.shapes import ShapesQA, ShapesScenes
from vzexp.engine.schedule import warmup_cosine
from vzexp.models.build import assemble, load_checkpoint
from vzexp.recipes.tiny_shapes.data import (
    CAPTION_PROMPT,
    Conversations,
    RenderedScenes,
    normalize_pixels,
)

torch.set_num_threads(int(os.environ.get("T", "1")))
path, name, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
over = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
lr, batch, turns = over.get("lr", 1e-3), over.get("batch", 16), over.get("turns", 10)
n_scenes, warmup, every = over.get("scenes", 6000), over.get("warmup", 100), over.get("eval", 250)
first = 0 if over.get("select") == "full" else 1  # LLaVA's default select drops CLS
torch.manual_seed(0)
trained, _ = load_checkpoint(path)
enc = OmegaConf.to_container(OmegaConf.load("conf/encoder/tiny_clip.yaml"))
llm = OmegaConf.to_container(OmegaConf.load("conf/llm/tiny_llama.yaml"))
llm["config"].update(over.get("llm", {}))
src0 = ShapesScenes(split="train", size=2, seed=0)
words = [*src0.vocabulary(), *CAPTION_PROMPT.replace(".", " . ").split()]
model, proc = assemble(enc, llm, words, seed=0)
tower = trained.model.vision_tower.eval()
im = proc.image_processor


@torch.no_grad()
def features(images: torch.Tensor) -> torch.Tensor:
    out = []
    for k in range(0, len(images), 256):
        px = normalize_pixels(images[k : k + 256], im.image_mean, im.image_std)
        out.append(tower(pixel_values=px, output_hidden_states=True).hidden_states[-2][:, first:])
    return torch.cat(out)


t0 = time.time()
scenes = RenderedScenes.build(ShapesScenes(split="train", size=n_scenes, seed=0))
train_feats = features(scenes.images)
data = Conversations(scenes, proc, train_feats.shape[1], "qa", turns, 0)
test = ShapesQA(split="test", size=400, seed=0)
test_items = [test[i] for i in range(len(test))]
import numpy as np

test_images = torch.stack(
    [torch.from_numpy(np.asarray(s.image.convert("RGB"))).permute(2, 0, 1) for s in test_items]
)
test_feats = features(test_images)
print(f"{name}: data ready in {time.time() - t0:.0f}s", flush=True)

tok = proc.tokenizer
image_id = tok.convert_tokens_to_ids(proc.image_token)
lm = model.model.language_model
projector = model.model.multi_modal_projector


def forward(ids: torch.Tensor, mask: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    embeds = lm.embed_tokens(ids.clamp(min=0))
    if feats is None:
        hidden = lm(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        return model.lm_head(hidden)
    visual = projector(feats)
    at = ids == image_id
    embeds = embeds.masked_scatter(at.unsqueeze(-1), visual.reshape(-1, visual.shape[-1]))
    hidden = lm(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    return model.lm_head(hidden)


def prompt_ids(question: str) -> list[int]:
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
    ]
    text = proc.apply_chat_template(messages, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False).input_ids
    at = ids.index(image_id)
    return ids[:at] + [image_id] * test_feats.shape[1] + ids[at + 1 :]


prompts = [prompt_ids(s.question) for s in test_items]
answers = [tok(s.answer, add_special_tokens=False).input_ids[0] for s in test_items]


@torch.no_grad()
def evaluate() -> dict[str, float]:
    model.eval()
    hits: dict[str, list[int]] = defaultdict(list)
    for k in range(0, len(prompts), 50):
        chunk = prompts[k : k + 50]
        width = max(map(len, chunk))
        ids = torch.full((len(chunk), width), tok.pad_token_id)
        mask = torch.zeros_like(ids)
        for r, p in enumerate(chunk):
            ids[r, : len(p)], mask[r, : len(p)] = torch.tensor(p), 1
        logits = forward(ids, mask, test_feats[k : k + 50])
        for r, p in enumerate(chunk):
            pred = logits[r, len(p) - 1].argmax().item()
            hits[test_items[k + r].meta["type"]].append(int(pred == answers[k + r]))
    model.train()
    acc = {t: sum(v) / len(v) for t, v in hits.items()}
    acc["ALL"] = sum(sum(v) for v in hits.values()) / len(prompts)
    return acc


from vzexp.data.shapes import caption

# the recipe's language-stage data: the caption in the image slot
text_data = Conversations(scenes, proc, train_feats.shape[1], "text", turns, 0)


def in_slot(ids: list[int], words: str) -> list[int]:
    """A test prompt with the scene's caption in the image slot."""
    at = ids.index(image_id)
    return ids[:at] + tok(words, add_special_tokens=False).input_ids + ids[at + 1 :]


@torch.no_grad()
def evaluate_text() -> str:
    model.eval()
    hits: dict[str, list[int]] = defaultdict(list)
    for k, s in enumerate(test_items):
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": s.question}]}
        ]
        ids = tok(
            proc.apply_chat_template(messages, add_generation_prompt=True), add_special_tokens=False
        ).input_ids
        ids = in_slot(ids, caption(test.scene(k)))
        ids_t = torch.tensor([ids])
        logits = forward(ids_t, torch.ones_like(ids_t), None)
        hits[s.meta["type"]].append(int(logits[0, -1].argmax().item() == answers[k]))
    model.train()
    all_ = sum(sum(v) for v in hits.values()) / len(test_items)
    return f"text_acc={all_:.2f} " + " ".join(
        f"{t}={sum(v) / len(v):.2f}" for t, v in sorted(hits.items())
    )


# reg: the projector alone, regressed per patch onto word embeddings of the LLM: an object patch
# -> E[its colour] + E[its shape], a background patch -> E["."] (the LLM's own embeddings, as
# they are when the phase runs), so that visual tokens start out as "merged words"
from vzexp.data.shapes import COLORS, SHAPES
from vzexp.recipes.tiny_shapes.data import patch_labels

grid = int(train_feats.shape[1] ** 0.5)
cids = {c: i + 1 for i, c in enumerate(COLORS)}
sids = {s_: i + 1 for i, s_ in enumerate(SHAPES)}
labels_c = torch.zeros(len(scenes), grid * grid, dtype=torch.long)
labels_s = torch.zeros(len(scenes), grid * grid, dtype=torch.long)
for i, sc in enumerate(scenes.scenes):
    labels_c[i], labels_s[i] = patch_labels(sc, grid, cids, sids)
word = lambda w: tok.convert_tokens_to_ids(w)  # noqa: E731
color_words = torch.tensor([word(".")] + [word(c) for c in COLORS])
shape_words = torch.tensor([word(".")] + [word(s_) for s_ in SHAPES])


def reg_targets(idx):
    emb = lm.embed_tokens.weight.detach()
    c, s_ = labels_c[idx], labels_s[idx]
    target = emb[color_words[c]] + emb[shape_words[s_]]
    return torch.where((c > 0).unsqueeze(-1), target, emb[word(".")].expand_as(target))


# phases: [mode, steps, lr, batch]; mode text = LLM on caption-in-context text, proj = projector
# alone on image QA, both = projector + LLM on image QA (the recipe's instruct stage), reg = the
# projector regressed onto word embeddings (above)
phases = over.get("phases", [["both", steps, lr, batch]])
gen = torch.Generator().manual_seed(0)
step, losses, epoch = 0, [], 0
for mode, n_steps, lr, batch in phases:
    model.requires_grad_(False)
    if mode in ("proj", "both", "reg"):
        projector.requires_grad_(True)
    if mode in ("text", "both"):
        lm.requires_grad_(True)
        model.lm_head.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(warmup, n_steps))
    model.train()
    t, done = time.time(), 0
    while done < n_steps:
        data.epoch = text_data.epoch = epoch
        order = torch.randperm(len(data), generator=gen)
        for k in range(0, len(order) - batch + 1, batch):
            idx = order[k : k + batch]
            items = [(text_data if mode == "text" else data)[int(i)] for i in idx]
            width = max(len(it["input_ids"]) for it in items)
            ids = torch.full((batch, width), tok.pad_token_id)
            labels = torch.full((batch, width), IGNORE_INDEX)
            mask = torch.zeros_like(ids)
            for r, it in enumerate(items):
                n = len(it["input_ids"])
                ids[r, :n], labels[r, :n], mask[r, :n] = it["input_ids"], it["labels"], 1
            if mode == "reg":
                out = projector(train_feats[idx])
                loss = (
                    torch.nn.functional.mse_loss(out, reg_targets(idx))
                    / reg_targets(idx).pow(2).mean()
                )
            else:
                logits = forward(ids, mask, None if mode == "text" else train_feats[idx])
                loss = torch.nn.functional.cross_entropy(
                    logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX
                )
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            step += 1
            done += 1
            if step % 50 == 0:
                print(
                    f"{name} {mode} {step} loss {sum(losses[-50:]) / 50:.3f} {time.time() - t:.0f}s",
                    flush=True,
                )
            if done % every == 0 or done == n_steps:
                if mode == "text":
                    print(f"{name} {mode} {step} EVAL {evaluate_text()}", flush=True)
                else:
                    acc = evaluate()
                    print(
                        f"{name} {mode} {step} EVAL "
                        + " ".join(f"{k}={v:.2f}" for k, v in sorted(acc.items())),
                        flush=True,
                    )
            if done >= n_steps:
                break
        epoch += 1
