"""LightningModules and data for the tiny model recipe (vzexp.models.tiny_recipe).

Stages, as LLaVA is trained: the vision tower learns the scenes through its CLS token (which
attributes are present, how many objects) and per patch; the LLM learns to answer questions about a
scene given as words in the image's slot (what a pretrained LLM brings to LLaVA); the projector
alone learns to put the visual tokens where those words were; then projector + LLM learn multi-turn
question answering on the images. The vision tower stays frozen after its own stage."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import Dataset

from vzexp.data.conversation import IGNORE_INDEX, ConversationEncoder, pad_right
from vzexp.data.isolated_turns import additive_mask, isolate_turns, pad_isolated
from vzexp.engine.schedule import Scheduled

# Not asked in any stage any more; its words stay in the vocabulary so that rebuilds keep the shipped
# tokenizer's word ids.
CAPTION_PROMPT = "Describe the image."


def normalize_pixels(images: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """uint8 (B, 3, H, W) at the tower's resolution -> the image processor's pixel_values
    (rescale + normalise; the processor's resize and crop are identities at that size)."""
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean_t) / std_t


@dataclass
class RenderedScenes:
    """A training stream rendered once: uint8 images plus each scene's caption and QAs."""

    images: torch.Tensor  # (N, 3, H, W) uint8
    scenes: list
    captions: list[str]
    qas: list[list]

    @classmethod
    def build(cls, source) -> RenderedScenes:
        import numpy as np

        images, scenes, captions, qas = [], [], [], []
        for i in range(len(source)):
            item = source[i]
            images.append(
                torch.from_numpy(np.asarray(item["image"].convert("RGB"))).permute(2, 0, 1)
            )
            scenes.append(item["scene"])
            captions.append(item["caption"])
            # an identity can be asked by several question types: one training turn per question
            qas.append(list({qa.question: qa for qa in item["qas"]}.values()))
        return cls(torch.stack(images), scenes, captions, qas)

    def __len__(self) -> int:
        return len(self.scenes)


class TowerTargets(Dataset):
    """Image -> which colour-shape identities are present, the object count - 1, and per patch
    the colour and shape of the object covering it (0 = background)."""

    def __init__(
        self,
        scenes: RenderedScenes,
        identities: list[tuple[str, str]],
        max_objects: int,
        grid: int,
    ):
        from vzexp.data.shapes import COLORS, SHAPES

        self.scenes, self.max_objects = scenes, max_objects
        self.index = {identity: i for i, identity in enumerate(identities)}
        colors = {c: i + 1 for i, c in enumerate(COLORS)}
        shapes = {s: i + 1 for i, s in enumerate(SHAPES)}
        self.patch_color = torch.zeros(len(scenes), grid * grid, dtype=torch.long)
        self.patch_shape = torch.zeros(len(scenes), grid * grid, dtype=torch.long)
        for i, scene in enumerate(scenes.scenes):
            color, shape = patch_labels(scene, grid, colors, shapes)
            self.patch_color[i], self.patch_shape[i] = color, shape

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        objects = self.scenes.scenes[i].objects
        present = torch.zeros(len(self.index))
        for o in objects:
            present[self.index[(o.color, o.shape)]] = 1.0
        return {
            "images": self.scenes.images[i],
            "present": present,
            "count": torch.tensor(min(len(objects), self.max_objects) - 1),
            "patch_color": self.patch_color[i],
            "patch_shape": self.patch_shape[i],
        }


def patch_labels(scene, grid: int, colors: dict, shapes: dict, cover: float = 0.3):
    """(grid*grid,) colour and shape ids of the object covering each patch (later objects are
    drawn on top, so they win), 0 where objects cover less than `cover` of the patch."""
    from dataclasses import replace

    from vzexp.data.shapes import object_mask

    color = torch.zeros(grid * grid, dtype=torch.long)
    shape = torch.zeros(grid * grid, dtype=torch.long)
    for obj in scene.objects:
        covered = torch.from_numpy(object_mask(replace(scene, objects=(obj,)), grid)).flatten()
        covered = covered >= cover
        color[covered], shape[covered] = colors[obj.color], shapes[obj.shape]
    return color, shape


class Conversations(Dataset):
    """Scene i -> a training sequence: `qa` (several of the scene's questions in one conversation,
    a fresh random subset each epoch), `text` (the same questions with the scene's caption in the
    image's slot instead of the visual tokens: the LLM's language stage, where it learns to find
    the asked object among the scene's words) or `objects` (the slot holds one token per object,
    the sum of its words' embeddings, at the position of its centre patch: see object_slot).

    `budgets` (qa mode): keys (i, tokens) give scene i with `tokens` image placeholders, for a
    batch whose image is compressed to that budget (vzexp.engine.budget_batches)."""

    def __init__(
        self,
        scenes: RenderedScenes,
        processor,
        image_tokens: int,
        mode: str,
        turns: int = 6,
        seed: int = 0,
        isolate: bool = False,
        budgets: tuple[int, ...] = (),
    ):
        if mode not in ("qa", "text", "objects"):
            raise ValueError(f"mode={mode!r}: expected qa, text or objects")
        # text, objects: a one-token image slot, replaced by the caption's words or the objects
        self.encode = ConversationEncoder(processor, image_tokens if mode == "qa" else 1)
        self.image_tokens = image_tokens
        self.scenes, self.tokenizer = scenes, processor.tokenizer
        self.image_id = self.tokenizer.convert_tokens_to_ids(processor.image_token)
        self.mode, self.turns, self.seed, self.epoch = mode, turns, seed, 0
        self.isolate = isolate
        self.budget_encoders = {b: ConversationEncoder(processor, b) for b in budgets}

    def __len__(self) -> int:
        return len(self.scenes)

    def _turns(self, i: int) -> list[tuple[str, str]]:
        rng = random.Random(f"{self.seed}:{self.epoch}:{i}")
        # one question per type, picked afresh each epoch: yes/no types would otherwise fill most
        # turns (each has a yes and a no question) and starve the rarer ones
        by_type: dict[str, list] = {}
        for qa in self.scenes.qas[i]:
            by_type.setdefault(qa.type, []).append(qa)
        qas = [rng.choice(group) for group in by_type.values()]
        rng.shuffle(qas)
        return [(qa.question, qa.answer) for qa in qas[: self.turns]]

    def _caption_in_slot(self, i: int, ids: list[int], labels: list[int]):
        words = self.tokenizer(self.scenes.captions[i], add_special_tokens=False).input_ids
        at = ids.index(self.image_id)
        return (
            ids[:at] + words + ids[at + 1 :],
            labels[:at] + [IGNORE_INDEX] * len(words) + labels[at + 1 :],
        )

    def _objects_in_slot(self, i: int, ids: list[int], labels: list[int]) -> dict[str, Any]:
        words, patches = object_slot(
            self.scenes.scenes[i], self.tokenizer.convert_tokens_to_ids, self.image_tokens
        )
        at, k = ids.index(self.image_id), len(words)
        after = len(ids) - at - 1
        # the text after the slot sits where it sits after the visual tokens
        positions = [*range(at), *(at + p for p in patches)]
        positions += range(at + self.image_tokens, at + self.image_tokens + after)
        return {
            "input_ids": torch.tensor(ids[:at] + [self.image_id] * k + ids[at + 1 :]),
            "labels": torch.tensor(labels[:at] + [IGNORE_INDEX] * k + labels[at + 1 :]),
            "position_ids": torch.tensor(positions),
            "object_words": torch.tensor(words),
        }

    def _sequence(
        self, i: int, turns: list[tuple[str, str]], budget: int | None = None
    ) -> tuple[dict[str, Any], int]:
        """The conversation of scene i as one sequence, and where its image slot ends."""
        if budget is not None:
            ids, labels = self.budget_encoders[budget](turns)
            return _item(ids, labels), ids.index(self.image_id) + budget
        ids, labels = self.encode(turns)
        at = ids.index(self.image_id)
        if self.mode == "objects":
            return self._objects_in_slot(i, ids, labels), at + len(self.scenes.scenes[i].objects)
        if self.mode == "text":
            before = len(ids)
            ids, labels = self._caption_in_slot(i, ids, labels)
            return _item(ids, labels), at + 1 + len(ids) - before  # the caption replaced 1 token
        return _item(ids, labels), at + self.image_tokens

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        i, budget = key if isinstance(key, tuple) else (key, None)
        turns = self._turns(i)
        if self.isolate:
            item = isolate_turns([self._sequence(i, [turn], budget) for turn in turns])
        else:
            item = self._sequence(i, turns, budget)[0]
        if self.mode == "qa":
            item["images"] = self.scenes.images[i]
        if budget is not None:
            item["visual_tokens"] = budget
        return item


def _item(ids: list[int], labels: list[int]) -> dict[str, torch.Tensor]:
    return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}


def object_slot(scene, word_id, image_tokens: int) -> tuple[list[list[int]], list[int]]:
    """The scene as the LLM's language stage sees it in `objects` mode: per object (in patch
    order) the word ids [colour, shape, small or -1] whose embeddings sum to its token, and the
    index of its centre patch. One token holding all of an object's attributes, where the object
    is, is what a visual token is; a caption spreads them over words, and the tiny LLM learns that
    two-step lookup (find the word, read its neighbour) only slowly (experiments/tiny_default)."""
    grid = int(round(image_tokens**0.5))

    def patch(obj) -> int:
        row, col = (min(int(v / scene.image_size * grid), grid - 1) for v in (obj.y, obj.x))
        return row * grid + col

    objects = sorted(scene.objects, key=patch)
    small = word_id("small")
    words = [
        [word_id(o.color), word_id(o.shape), small if scene.is_small(o) else -1] for o in objects
    ]
    return words, [patch(o) for o in objects]


def object_embeddings(embed: nn.Embedding, input_ids, object_words, image_id: int):
    """input_ids' embeddings with each image-slot token replaced by its object's word sum."""
    embeds = embed(input_ids)
    valid = object_words >= 0
    objects = (embed(object_words.clamp(min=0)) * valid.unsqueeze(-1)).sum(2)  # (B, K, D)
    present = valid[..., 0]  # padding objects have no colour
    slots = (input_ids == image_id).unsqueeze(-1)
    return embeds.masked_scatter(slots, objects[present])


class EpochSetter(L.Callback):
    """Tells datasets with an `epoch` attribute which epoch it is (fresh QA subsets each epoch)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.dataset.epoch = trainer.current_epoch


class Collate:
    """Right-padded ids/labels + normalised pixels; images stay uint8 until batched."""

    def __init__(self, pad_id: int, mean: list[float], std: list[float]):
        self.pad_id, self.mean, self.std = pad_id, mean, std

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        if "images" in items[0]:
            images = torch.stack([it["images"] for it in items])
            batch["pixel_values"] = normalize_pixels(images, self.mean, self.std)
        if "input_ids" in items[0]:
            batch.update(pad_right(items, self.pad_id))
        pad = nn.utils.rnn.pad_sequence
        if "segments" in items[0]:  # isolated turns: their positions and turn mask
            batch.update(pad_isolated(items))
        elif "position_ids" in items[0]:
            batch["position_ids"] = pad([it["position_ids"] for it in items], batch_first=True)
        if "object_words" in items[0]:
            batch["object_words"] = pad(
                [it["object_words"] for it in items], batch_first=True, padding_value=-1
            )
        if "visual_tokens" in items[0]:  # a budget batch: one budget for all its rows
            batch["visual_tokens"] = items[0]["visual_tokens"]
        for key in ("present", "count", "patch_color", "patch_shape"):
            if key in items[0]:
                batch[key] = torch.stack([it[key] for it in items])
        return batch


class TowerPretrainer(Scheduled):
    """Attribute classification through the CLS token: the tower must gather every object into
    CLS, which is what makes its attention concentrate on object patches (VisionZip's premise).
    Per-patch colour and shape heads on the feature layer (LLaVA's -2) make the patch features the
    LLM reads name what they show."""

    def __init__(
        self,
        tower: nn.Module,
        num_identities: int,
        max_objects: int,
        num_colors: int,
        num_shapes: int,
        feature_layer: int = -2,
        patch_weight: float = 1.0,
        **schedule,
    ):
        super().__init__(**schedule)
        self.tower, self.feature_layer, self.patch_weight = tower, feature_layer, patch_weight
        width = tower.config.hidden_size
        self.present_head = nn.Linear(width, num_identities)
        self.count_head = nn.Linear(width, max_objects)
        self.patch_color_head = nn.Linear(width, num_colors + 1)
        self.patch_shape_head = nn.Linear(width, num_shapes + 1)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.tower(pixel_values=batch["pixel_values"], output_hidden_states=True)
        pooled, patches = out.pooler_output, out.hidden_states[self.feature_layer][:, 1:]
        present_logits, count_logits = self.present_head(pooled), self.count_head(pooled)
        color_logits = self.patch_color_head(patches)
        shape_logits = self.patch_shape_head(patches)
        ce = nn.functional.cross_entropy
        losses = {
            "present": nn.functional.binary_cross_entropy_with_logits(
                present_logits, batch["present"]
            ),
            "count": ce(count_logits, batch["count"]),
            "patch_color": ce(color_logits.flatten(0, 1), batch["patch_color"].flatten()),
            "patch_shape": ce(shape_logits.flatten(0, 1), batch["patch_shape"].flatten()),
        }
        # per-patch targets are mostly background: weighted up so that shape is not drowned by CLS's
        loss = losses["present"] + losses["count"]
        loss = loss + self.patch_weight * (losses["patch_color"] + losses["patch_shape"])
        with torch.no_grad():
            on_object = batch["patch_shape"] > 0
            metrics = {
                "tower/loss": loss,
                "tower/present_exact": ((present_logits > 0).float() == batch["present"])
                .all(dim=1)
                .float()
                .mean(),
                "tower/count_acc": (count_logits.argmax(-1) == batch["count"]).float().mean(),
                "tower/patch_shape_acc_on_objects": (
                    shape_logits.argmax(-1)[on_object] == batch["patch_shape"][on_object]
                )
                .float()
                .mean(),
            }
        self.log_dict(metrics, prog_bar=True)
        return loss


class LlavaStage(Scheduled):
    """One LLaVA training stage: the listed parts train, the rest of the model is frozen."""

    PARTS = ("projector", "llm")

    def __init__(self, model, stage: str, trainable: tuple[str, ...], compressors=None, **schedule):
        super().__init__(**schedule)
        # budget -> the compressor of budget batches (vzexp.engine.budget_batches)
        self.compressors = dict(compressors or {})
        unknown = set(trainable) - set(self.PARTS)
        if unknown:
            raise ValueError(f"trainable parts {sorted(unknown)}: expected some of {self.PARTS}")
        self.model, self.stage = model, stage
        model.requires_grad_(False)
        if "projector" in trainable:
            model.model.multi_modal_projector.requires_grad_(True)
        if "llm" in trainable:
            model.model.language_model.requires_grad_(True)
            model.lm_head.requires_grad_(True)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs: dict[str, Any] = {"attention_mask": batch["attention_mask"]}
        if "turn_mask" in batch:  # isolated turns: an additive mask in the model's dtype
            inputs["attention_mask"] = additive_mask(batch["turn_mask"], self.model.dtype)
        if "position_ids" in batch:
            inputs["position_ids"] = batch["position_ids"]
        if "visual_tokens" in batch:  # a budget batch: the image compressed, as at evaluation
            inputs["inputs_embeds"] = self.compressed_embeddings(batch)
        elif "object_words" in batch:  # the scene as object tokens (Conversations' objects mode)
            inputs["inputs_embeds"] = object_embeddings(
                self.model.get_input_embeddings(),
                batch["input_ids"],
                batch["object_words"],
                self.model.config.image_token_id,
            )
        else:
            inputs.update(input_ids=batch["input_ids"], pixel_values=batch.get("pixel_values"))
        out = self.model(**inputs, labels=batch["labels"])
        suffix = "_at_budget" if "visual_tokens" in batch else ""
        self.log(f"{self.stage}/loss{suffix}", out.loss, prog_bar=True)
        return out.loss

    def compressed_embeddings(self, batch: dict[str, Any]) -> torch.Tensor:
        """The batch's embeddings with its images compressed by the budget's compressor (the
        frozen tower, no gradient) and projected (with gradient) into the slots."""
        from vzexp.models.llava import compressed_features, fill_image_slots

        compressor = self.compressors[batch["visual_tokens"]]
        with torch.no_grad():
            tokens = compressed_features(self.model, batch["pixel_values"], compressor).tokens
        projected = self.model.model.multi_modal_projector(tokens)
        return fill_image_slots(self.model, batch["input_ids"], projected)
