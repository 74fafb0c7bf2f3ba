"""The tiny_shapes recipe's training objectives, in plain torch: one `nn.Module` per kind of stage
whose trainable parameters are what the stage trains and whose `forward(batch)` returns the loss
and the scalars to log (the contract of `vzexp.engine.training.StepModule`, which trains it)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vzexp.data.isolated_turns import additive_mask


class TowerPretrainer(nn.Module):
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
    ):
        super().__init__()
        self.tower, self.feature_layer, self.patch_weight = tower, feature_layer, patch_weight
        width = tower.config.hidden_size
        self.present_head = nn.Linear(width, num_identities)
        self.count_head = nn.Linear(width, max_objects)
        self.patch_color_head = nn.Linear(width, num_colors + 1)
        self.patch_shape_head = nn.Linear(width, num_shapes + 1)

    def forward(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
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
        return loss, metrics


class LlavaStage(nn.Module):
    """One LLaVA training stage: the listed parts train, the rest of the model is frozen. The
    loss is logged as `<stage>/loss`, or `<stage>/loss_at_budget` for a budget batch."""

    PARTS = ("projector", "llm")

    def __init__(self, model, stage: str, trainable: tuple[str, ...], compressors=None):
        super().__init__()
        # budget -> the compressor of budget batches (vzexp.recipes.tiny_shapes.budget_batches)
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

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
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
        return out.loss, {f"{self.stage}/loss{suffix}": out.loss}

    def compressed_embeddings(self, batch: dict[str, Any]) -> torch.Tensor:
        """The batch's embeddings with its images compressed by the budget's compressor (the
        frozen tower, no gradient) and projected (with gradient) into the slots."""
        from vzexp.models.llava import compressed_features, fill_image_slots

        compressor = self.compressors[batch["visual_tokens"]]
        with torch.no_grad():
            tokens = compressed_features(self.model, batch["pixel_values"], compressor).tokens
        projected = self.model.model.multi_modal_projector(tokens)
        return fill_image_slots(self.model, batch["input_ids"], projected)


def object_embeddings(embed: nn.Embedding, input_ids, object_words, image_id: int):
    """input_ids' embeddings with each image-slot token replaced by its object's word sum."""
    embeds = embed(input_ids)
    valid = object_words >= 0
    objects = (embed(object_words.clamp(min=0)) * valid.unsqueeze(-1)).sum(2)  # (B, K, D)
    present = valid[..., 0]  # padding objects have no colour
    slots = (input_ids == image_id).unsqueeze(-1)
    return embeds.masked_scatter(slots, objects[present])


def budget_compressors(model, budgets: list[int]) -> dict:
    """Image placeholders per image -> VisionZip (the registry's defaults, the reference's) at
    each of `budgets`: the compressors of the instruct stage's budget batches."""
    from vzexp.compress.registry import build_compressor
    from vzexp.models.install import tokens_per_image

    compressors = {}
    for budget in budgets:
        compressor = build_compressor("visionzip", budget=budget)
        compressors[tokens_per_image(model, compressor)] = compressor
    return compressors
