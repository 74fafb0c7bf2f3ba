"""Build a LLaVA model and its processor: from a whole checkpoint directory, or assembled the
LLaVA way from an encoder + an LLM + a fresh projector (random init unless given weights)."""

from __future__ import annotations

import json
import weakref
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from vzexp.errors import ConfigError, MissingPathError, first_line
from vzexp.hardware import SPREAD
from vzexp.models.family import family_for_type
from vzexp.models.tokenizer import CHAT_TEMPLATE, CHAT_TEMPLATES, build_word_tokenizer

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Vision towers we can assemble, by config `kind`: their transformers model type.
ENCODER_KINDS = {"clip": "clip_vision_model", "siglip": "siglip_vision_model", "dinov2": "dinov2"}
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def torch_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ConfigError("model.dtype", name, f"one of {', '.join(DTYPES)}")
    return DTYPES[name]


# LM heads given a contiguous input by fold_lm_head_input -> the hook's handle (a head folded
# once is not hooked again; the entry goes with the head)
_FOLDED_HEADS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _contiguous_input(_module, args):
    return (args[0].contiguous(), *args[1:]) if args else None


def fold_lm_head_input(model) -> None:
    """Make the LM head's input contiguous. generate() feeds it the last position's hidden
    state, a (B, 1, d) slice of (B, S, d); with a frozen head (requires_grad False: every
    model after task=tune) torch's matmul cannot fold that slice into one matrix product
    and multiplies B expanded copies of the head weight instead (small_real's LLM prefill:
    1.78x, experiments/perf/lm_head.md). The copy of the slice is B x d numbers."""
    head = model.get_output_embeddings()
    if head is None or head in _FOLDED_HEADS:
        return
    _FOLDED_HEADS[head] = head.register_forward_pre_hook(_contiguous_input)


def check_checkpoint_dir(path: str | None, key: str, families: tuple[str, ...]) -> Path:
    """`path` as a local transformers checkpoint directory (it holds a config.json, of one of
    `families`' model types when given); MissingPathError naming `key` otherwise."""
    if not path:
        raise MissingPathError(
            f"{key} is not set: give a local checkpoint directory, e.g. {key}=/models/llava-1.5-7b-hf"
        )
    root = Path(path).expanduser()
    if not (root / "config.json").is_file():
        from vzexp.paths import resource_dir

        hint = "expected a local transformers checkpoint directory"
        if root.resolve() == (resource_dir() / "tiny_shapes").resolve():
            hint = (
                "the tiny_shapes weights are not installed in this package; build them with "
                "`python -m vzexp +experiment=build_tiny task.install=true`"
            )
        raise MissingPathError(f"{key}={path!r}: no config.json there; {hint}")
    model_type = json.loads((root / "config.json").read_text()).get("model_type")
    if families and model_type not in families:
        raise MissingPathError(
            f"{key}={path!r} holds a '{model_type}' model; this config expects one of {', '.join(families)}"
        )
    return root


def checkpoint_type(path: str | None, family: str | None = None) -> str:
    """The model type of a local checkpoint directory, checked against the config's family
    (None: any family vzexp supports)."""
    from vzexp.models.registry import FAMILIES

    families = (family,) if family else tuple(FAMILIES)
    root = check_checkpoint_dir(path, "model.path", families)
    return json.loads((root / "config.json").read_text())["model_type"]


def load_checkpoint(
    path: str,
    dtype: str = "float32",
    device: str = "cpu",
    attn_implementation: str = "sdpa",
    family: str | None = "llava",
):
    """A local checkpoint directory of a supported family (llava-hf LLaVA-1.5 / NeXT /
    OneVision, Qwen2-VL, Qwen2.5-VL) through its standard transformers classes."""
    from vzexp.models.processors import load_processor

    model_type = checkpoint_type(path, family)
    chosen = family_for_type(model_type)
    root = Path(path).expanduser()
    try:
        # device=spread: accelerate places the layers over the visible GPUs (a 13B on two cards)
        placement = {"device_map": "auto"} if device == SPREAD else {}
        model = chosen.model_class().from_pretrained(
            root, dtype=torch_dtype(dtype), attn_implementation=attn_implementation, **placement
        )
        if device != SPREAD:
            model = model.to(device)
        processor = load_processor(root, chosen.processor_class())
    except (OSError, ValueError) as exc:
        raise MissingPathError(
            f"model.path={path!r} could not be loaded as a {model_type} checkpoint (weights + processor files): {first_line(exc)}"
        ) from exc
    processor.tokenizer.padding_side = "left"
    fold_lm_head_input(model)
    return model.eval(), processor


def _encoder(encoder_cfg: dict[str, Any], attn_implementation: str):
    from transformers import AutoModel

    kind = encoder_cfg.get("kind", "clip")
    if kind not in ENCODER_KINDS:
        raise ConfigError("encoder.kind", kind, f"one of {', '.join(ENCODER_KINDS)}")
    size = encoder_cfg.get("image_size")
    if size and kind != "dinov2":
        raise ConfigError(
            "encoder.image_size", size, "null for a clip or siglip tower (dinov2 only)"
        )
    if encoder_cfg.get("path"):
        root = check_checkpoint_dir(encoder_cfg["path"], "encoder.path", ())
        tower = AutoModel.from_pretrained(root, attn_implementation=attn_implementation)
        tower = getattr(tower, "vision_model", tower)
        if size:
            from vzexp.pretrained.dinov2 import at_resolution

            at_resolution(tower, size)
        return tower.config, tower
    config = AutoConfig.for_model(ENCODER_KINDS[kind], **encoder_cfg.get("config", {}))
    if size:
        config.image_size = size
    return config, None


def _llm(llm_cfg: dict[str, Any], words: list[str], attn_implementation: str):
    if llm_cfg.get("path"):
        root = check_checkpoint_dir(llm_cfg["path"], "llm.path", ())
        tokenizer = AutoTokenizer.from_pretrained(root, padding_side="left")
        if "<image>" not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        template = llm_cfg.get("chat_template")
        if template:
            if template not in CHAT_TEMPLATES:
                raise ConfigError(
                    "llm.chat_template", template, f"null or one of {', '.join(CHAT_TEMPLATES)}"
                )
            tokenizer.chat_template = CHAT_TEMPLATES[template]
        llm = AutoModelForCausalLM.from_pretrained(root, attn_implementation=attn_implementation)
        llm.resize_token_embeddings(len(tokenizer))
        return llm.config, llm, tokenizer
    tokenizer = build_word_tokenizer(words)
    config = AutoConfig.for_model(
        llm_cfg.get("kind", "llama"),
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **llm_cfg.get("config", {}),
    )
    return config, None, tokenizer


def assemble(
    encoder_cfg: dict[str, Any],
    llm_cfg: dict[str, Any],
    words: list[str],
    feature_layer: int = -2,
    select: str = "default",
    projector_act: str = "gelu",
    dtype: str = "float32",
    device: str = "cpu",
    attn_implementation: str = "sdpa",
    seed: int = 0,
):
    """encoder + LLM + 2-layer MLP projector, as LLaVA-1.5 is built."""
    torch.manual_seed(seed)
    vision_config, tower = _encoder(encoder_cfg, attn_implementation)
    text_config, llm, tokenizer = _llm(llm_cfg, words, attn_implementation)
    grid = vision_config.image_size // vision_config.patch_size
    has_cls = family_for_type("llava").tower_has_cls(vision_config)
    if not has_cls and select == "default":
        raise ConfigError(
            "model.select",
            select,
            "full for an encoder without CLS ('default' drops the first token, a patch here)",
        )
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=grid * grid + int(has_cls and select == "full"),
        projector_hidden_act=projector_act,
        vision_feature_layer=feature_layer,
        vision_feature_select_strategy=select,
    )
    model = LlavaForConditionalGeneration._from_config(
        config, attn_implementation=attn_implementation
    )
    if tower is not None:
        model.model.vision_tower.load_state_dict(tower.state_dict())
    if llm is not None:
        model.model.language_model.load_state_dict(llm.model.state_dict())
        model.lm_head.load_state_dict(llm.lm_head.state_dict())
    normalise = (encoder_cfg.get("image_mean"), encoder_cfg.get("image_std"))
    processor = make_processor(vision_config, tokenizer, select, has_cls, *normalise)
    fold_lm_head_input(model)
    return model.to(device=device, dtype=torch_dtype(dtype)).eval(), processor


def make_processor(
    vision_config, tokenizer, select: str, has_cls: bool, mean=None, std=None
) -> LlavaProcessor:
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    side = vision_config.image_size
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": side},
        crop_size={"height": side, "width": side},
        image_mean=list(mean or CLIP_MEAN),
        image_std=list(std or CLIP_STD),
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=vision_config.patch_size,
        vision_feature_select_strategy=select,
        chat_template=tokenizer.chat_template or CHAT_TEMPLATE,
        num_additional_image_tokens=int(has_cls),
    )


def set_image_pad(processor, pad: bool | None) -> None:
    """model.image_pad on a LLaVA-1.5 processor: transformers' `do_pad` of its LLaVA image
    processor is LLaVA's expand2square (the image centred on a square filled with the mean
    colour, then resized and cropped as before). A CLIP image processor (what many llava-hf
    checkpoints name) becomes the LLaVA one with the same settings, which is CLIP's plus that
    rule. None keeps the processor's own setting; other processors have no such rule
    (LLaVA-NeXT's `do_pad` pads crops to a batch, not an image to a square)."""
    if pad is None:
        return
    image_processor = getattr(processor, "image_processor", processor)
    kind = type(image_processor).__name__
    if kind.startswith("CLIPImageProcessor") and processor is not image_processor:
        from transformers import LlavaImageProcessorPil

        image_processor = LlavaImageProcessorPil.from_dict(image_processor.to_dict())
        processor.image_processor = image_processor
    elif not kind.startswith("LlavaImageProcessor"):
        raise ConfigError(
            "model.image_pad",
            pad,
            f"null for this model: its image processor ({kind}) has no pad-to-square "
            "(LLaVA-1.5's processors have)",
        )
    image_processor.do_pad = pad
