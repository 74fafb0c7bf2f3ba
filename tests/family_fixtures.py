"""Tiny random models of every supported family, built from configs through their real
transformers classes and processors (no downloads), with the project's word tokenizer."""

from __future__ import annotations

import torch
from transformers import AutoConfig

from vzexp.models.processors import image_only
from vzexp.models.tokenizer import CHAT_TEMPLATE, build_word_tokenizer

WORDS = "what color is the square red green blue yellow left right".split()
PINPOINTS = [[28, 56], [56, 28], [56, 56]]  # anyres: 1x2, 2x1 and 2x2 crops of 28 px


def _tokenizer():
    """The shapes benchmark's words (so CLI runs on data=shapes have no unknown words) and the
    video placeholders the OneVision and Qwen processors count (they must not be <unk>)."""
    from vzexp.data.shapes import vocabulary

    tok = build_word_tokenizer([*WORDS, *vocabulary()])
    tok.add_special_tokens({"additional_special_tokens": ["<video>", "<|video_pad|>"]})
    return tok


def _llama(tokenizer, **extra):
    return AutoConfig.for_model(
        "llama",
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **extra,
    )


def llava_next(seed: int = 0):
    """LlavaNextForConditionalGeneration: CLIP 4x4 patches of 7 px at 28 px + CLS, anyres crops."""
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import (
        LlavaNextImageProcessorPil,
    )

    tok = _tokenizer()
    vision = AutoConfig.for_model(
        "clip_vision_model",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        image_size=28,
        patch_size=7,
        projection_dim=32,
    )
    config = LlavaNextConfig(
        vision_config=vision,
        text_config=_llama(tok),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=PINPOINTS,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration._from_config(config, attn_implementation="sdpa")
    images = LlavaNextImageProcessorPil(
        size={"shortest_edge": 28},
        crop_size={"height": 28, "width": 28},
        image_grid_pinpoints=PINPOINTS,
    )
    processor = LlavaNextProcessor(
        image_processor=images,
        tokenizer=tok,
        patch_size=7,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        num_additional_image_tokens=1,
    )
    return model.eval(), processor


def llava_onevision(seed: int = 0):
    """LlavaOnevisionForConditionalGeneration: SigLIP (no CLS) 4x4 patches at 28 px, anyres."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionProcessor,
    )
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil,
    )

    tok = _tokenizer()
    vision = AutoConfig.for_model(
        "siglip_vision_model",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        image_size=28,
        patch_size=7,
    )
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=_llama(tok),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        video_token_index=tok.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=PINPOINTS,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
    )
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration._from_config(config, attn_implementation="sdpa")
    images = LlavaOnevisionImageProcessorPil(
        size={"height": 28, "width": 28}, image_grid_pinpoints=PINPOINTS
    )
    processor = image_only(LlavaOnevisionProcessor)(
        image_processor=images,
        tokenizer=tok,
        video_processor=None,
        num_image_tokens=16,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
    )
    return model.eval(), processor


FAMILIES = {"llava_next": llava_next, "llava_onevision": llava_onevision}


def _qwen(config_cls, model_cls, vision: dict, seed: int):
    from transformers import Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    tok = _tokenizer()
    image_id = tok.convert_tokens_to_ids("<image>")
    text = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    config = config_cls(
        vision_config=vision,
        text_config=text,
        image_token_id=image_id,
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.bos_token_id,
        vision_end_token_id=tok.bos_token_id,
    )
    torch.manual_seed(seed)
    model = model_cls._from_config(config, attn_implementation="sdpa")
    # 7-px patches merged 2x2: images resized to multiples of 14 px, 4..64 tokens each
    images = Qwen2VLImageProcessorPil(
        patch_size=7,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=14 * 14 * 4,
        max_pixels=14 * 14 * 64,
    )
    processor = image_only(Qwen2VLProcessor)(
        image_processor=images, tokenizer=tok, video_processor=None, chat_template=CHAT_TEMPLATE
    )
    return model.eval(), processor


def qwen2_vl(seed: int = 0):
    """Qwen2VLForConditionalGeneration: 3 tower blocks of width 32, 7-px patches, 2x2 merger."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    vision = dict(depth=3, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=7)
    return _qwen(Qwen2VLConfig, Qwen2VLForConditionalGeneration, vision, seed)


def qwen2_5_vl(seed: int = 0):
    """Qwen2_5_VLForConditionalGeneration: blocks 0-1 attend in 28-px windows, block 2 globally."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    vision = dict(
        depth=3,
        hidden_size=32,
        out_hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        patch_size=7,
        window_size=28,
        fullatt_block_indexes=[2],
    )
    return _qwen(Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, vision, seed)


FAMILIES.update(qwen2_vl=qwen2_vl, qwen2_5_vl=qwen2_5_vl)
