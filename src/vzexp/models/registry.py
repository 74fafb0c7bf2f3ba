"""The supported model families, by the `model_type` of a checkpoint's config.json: the module
and class of each family's adapter (imported on first use; this module imports nothing heavy, so
config validation can name the families)."""

FAMILIES = {
    "llava": "vzexp.models.llava:LlavaFamily",
    "llava_next": "vzexp.models.llava_next:LlavaNextFamily",
    "llava_onevision": "vzexp.models.llava_next:LlavaOnevisionFamily",
    "qwen2_vl": "vzexp.models.qwen2_vl:Qwen2VLFamily",
    "qwen2_5_vl": "vzexp.models.qwen2_vl:Qwen2_5_VLFamily",
}
