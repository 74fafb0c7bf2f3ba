"""Training sequences in the model's own chat format: image + multi-turn QA -> (input_ids, labels).

The text is rendered with the processor's chat template, exactly as evaluation renders prompts, and
only the assistant's answers (and their end-of-turn token) are learned, as in LLaVA's instruction
tuning. Spans come from rendering growing prefixes of the conversation."""

from __future__ import annotations

from collections.abc import Sequence

IGNORE_INDEX = -100
Turn = tuple[str, str]


def _messages(turns: Sequence[Turn], with_image: bool) -> list[dict]:
    messages = []
    for k, (question, answer) in enumerate(turns):
        content = [{"type": "text", "text": question}]
        if k == 0 and with_image:
            content.insert(0, {"type": "image"})
        messages.append({"role": "user", "content": content})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def encode_conversation(
    processor, turns: Sequence[Turn], image_tokens: int, with_image: bool = True
) -> tuple[list[int], list[int]]:
    """(input_ids, labels) with the image placeholder expanded to `image_tokens` positions."""
    tokenizer = processor.tokenizer
    messages = _messages(turns, with_image)

    def ids(upto: int, prompt: bool) -> list[int]:
        text = processor.apply_chat_template(messages[:upto], add_generation_prompt=prompt)
        return tokenizer(text, add_special_tokens=False).input_ids

    input_ids = ids(len(messages), False)
    labels = [IGNORE_INDEX] * len(input_ids)
    for k in range(len(turns)):
        start = len(ids(2 * k + 1, True))  # after "ASSISTANT:"
        through_answer = ids(2 * k + 2, False)  # ... and the answer with its end-of-turn token
        if input_ids[: len(through_answer)] != through_answer:
            raise ValueError("the chat template's turns do not tokenize as a prefix of the whole")
        labels[start : len(through_answer)] = through_answer[start:]
    if with_image:
        image_id = tokenizer.convert_tokens_to_ids(processor.image_token)
        at = input_ids.index(image_id)
        input_ids[at : at + 1] = [image_id] * image_tokens
        labels[at : at + 1] = [IGNORE_INDEX] * image_tokens
    return input_ids, labels


class ConversationEncoder:
    """encode_conversation at training speed: rendering the template for every turn of every
    sample costs more than the model step, so each (position, question, answer) turn is encoded
    once and reused. Valid when the template renders turns independently of the ones before
    (LLaVA's USER/ASSISTANT format); the first conversation of each shape is checked against the
    full rendering and a template that breaks the assumption raises at once."""

    def __init__(self, processor, image_tokens: int):
        self.processor, self.image_tokens = processor, image_tokens
        self._turns: dict[tuple[bool, bool, str, str], tuple[list[int], list[int]]] = {}
        self._checked: set[tuple[int, bool]] = set()

    def _turn(self, first: bool, with_image: bool, turn: Turn) -> tuple[list[int], list[int]]:
        key = (first, with_image, *turn)
        if key not in self._turns:
            if first:
                self._turns[key] = encode_conversation(
                    self.processor, [turn], self.image_tokens, with_image
                )
            else:  # a later turn = (filler + turn) minus the filler's own encoding
                filler = ("", "")
                both = encode_conversation(self.processor, [filler, turn], self.image_tokens, False)
                alone = encode_conversation(self.processor, [filler], self.image_tokens, False)
                self._turns[key] = (both[0][len(alone[0]) :], both[1][len(alone[1]) :])
        return self._turns[key]

    def __call__(
        self, turns: Sequence[Turn], with_image: bool = True
    ) -> tuple[list[int], list[int]]:
        input_ids: list[int] = []
        labels: list[int] = []
        for k, turn in enumerate(turns):
            ids, labs = self._turn(k == 0, with_image, turn)
            input_ids += ids
            labels += labs
        shape = (len(turns), with_image)
        if shape not in self._checked:
            expected = encode_conversation(self.processor, turns, self.image_tokens, with_image)
            if (input_ids, labels) != expected:
                raise ValueError(
                    "this chat template does not render turns independently; "
                    "use encode_conversation (slower) for it"
                )
            self._checked.add(shape)
        return input_ids, labels


def pad_right(items: list[dict], pad_id: int) -> dict:
    """Training items' input_ids/labels -> right-padded (B, T) input_ids, labels (IGNORE_INDEX
    in the padding) and attention_mask."""
    import torch

    width = max(len(it["input_ids"]) for it in items)
    ids = torch.full((len(items), width), pad_id)
    labels = torch.full((len(items), width), IGNORE_INDEX)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, it in enumerate(items):
        n = len(it["input_ids"])
        ids[row, :n], labels[row, :n], mask[row, :n] = it["input_ids"], it["labels"], 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
