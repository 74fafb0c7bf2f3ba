"""Multi-turn dialogue about one image: the visual tokens are encoded (and compressed) once, and
the conversation's KV cache carries every earlier turn, so turn k prefills only its own tokens.

VisionZip's tokens do not depend on the question, which is what makes this reuse valid. The
comparison point (`reencode=True`) is what a stateless server does: every turn sends the image and
the whole conversation again, so the tower, the compressor and the prefill of every earlier turn
run again. Both build exactly the same token sequence, so their greedy answers agree; only the
work differs."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass
class Turn:
    prediction: str
    seconds: float  # this turn's wall time: (encoding +) prefill + decoding
    new_tokens: int  # tokens this turn fed the LLM before decoding (prefill length)


def _ids(processor, messages, generation_prompt: bool) -> list[int]:
    text = processor.apply_chat_template(messages, add_generation_prompt=generation_prompt)
    return processor.tokenizer(text, add_special_tokens=False).input_ids


def _user(question: str, images: int = 0) -> dict:
    content = [{"type": "image"} for _ in range(images)] + [{"type": "text", "text": question}]
    return {"role": "user", "content": content}


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


class TurnTemplate:
    """The chat template's pieces for continuing a conversation in token ids: a later user turn
    with the assistant prompt, and what closes an assistant answer. Derived by rendering
    conversations with and without the piece (the template must render turns independently)."""

    def __init__(self, processor):
        self.processor = processor
        first = [_user("x"), _assistant("y")]
        prompt = _ids(processor, first[:1], True)
        closed = _ids(processor, first, False)
        answer = processor.tokenizer("y", add_special_tokens=False).input_ids
        if (
            closed[: len(prompt)] != prompt
            or closed[len(prompt) : len(prompt) + len(answer)] != answer
        ):
            raise ValueError("this chat template does not render turns independently")
        self.end_of_turn = closed[len(prompt) + len(answer) :]  # e.g. </s>, or <|im_end|> \n
        self._closed = closed

    def user_turn(self, question: str) -> list[int]:
        """Ids of a later user turn and the assistant prompt (e.g. "USER: q ASSISTANT:")."""
        after = _ids(self.processor, [_user("x"), _assistant("y"), _user(question)], True)
        if after[: len(self._closed)] != self._closed:
            raise ValueError("this chat template does not render turns independently")
        return after[len(self._closed) :]

    def close(self, generated: list[int]) -> list[int]:
        """The rest of the end-of-turn tokens after a generated answer."""
        end = self.end_of_turn
        for k in range(len(end), 0, -1):  # the answer may already end with a prefix of them
            if generated[-k:] == end[:k]:
                return end[k:]
        return end


def converse(
    installed,
    processor,
    images: list,
    questions: list[str],
    max_new_tokens: int,
    reencode: bool = False,
) -> list[Turn]:
    """Ask `questions` in one conversation about `images` (one sample: an image, or a video's
    frames), greedily, of the model of `installed` (its vzexp.models.install handle); each answer
    joins the conversation as generated. reencode=False reuses the KV cache (the images are
    encoded once); reencode=True sends everything again every turn."""
    model = installed.model
    template = TurnTemplate(processor)
    first = processor.apply_chat_template(
        [_user(questions[0], images=len(images))], add_generation_prompt=True
    )
    inputs = dict(processor(images=[images], text=[first], return_tensors="pt"))
    prompt = inputs.pop("input_ids")
    inputs.pop("attention_mask", None)
    settings = dict(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=processor.tokenizer.pad_token_id,
        return_dict_in_generate=True,
    )
    history: list[int] = []  # the ids after the first prompt: answers, closings, later turns
    context = cache = None  # with reuse: the ids the LLM has seen, and their KV cache
    turns: list[Turn] = []
    for k, question in enumerate(questions):
        start = time.perf_counter()
        if k == 0 or reencode:  # the images and the whole conversation, from nothing
            if k:
                history += template.user_turn(question)
            ids = torch.cat([prompt, torch.tensor([history], dtype=prompt.dtype)], dim=1)
            extended = {  # per-token inputs (Qwen's mm_token_type_ids): the history is text
                k: torch.cat([v, v.new_zeros(1, ids.shape[1] - v.shape[1])], dim=1)
                if torch.is_tensor(v) and v.shape[:2] == prompt.shape
                else v
                for k, v in inputs.items()
            }
            out = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), **extended, **settings
            )
            new = out.sequences[0, ids.shape[1] :].tolist()
            # what the LLM saw: the compressor cut the image placeholders
            seen = installed.last_sequences
            seen = out.sequences if seen is None else seen
            prefilled = seen.shape[1] - len(new)
        else:  # only this turn's tokens: the cache holds the images and every earlier turn
            turn = template.user_turn(question)
            history += turn
            ids = torch.cat([context, torch.tensor([turn], dtype=context.dtype)], dim=1)
            prefilled = ids.shape[1] - cache.get_seq_length()
            out = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), cache=cache, **settings
            )
            new = out.sequences[0, ids.shape[1] :].tolist()
            seen = out.sequences
        seconds = time.perf_counter() - start
        closing = template.close(new)
        history += new + closing
        if not reencode:
            cache = out.cache
            context = torch.cat([seen, torch.tensor([closing], dtype=seen.dtype)], dim=1)
        text = processor.tokenizer.decode(new, skip_special_tokens=True).strip()
        turns.append(Turn(prediction=text, seconds=seconds, new_tokens=int(prefilled)))
    return turns
