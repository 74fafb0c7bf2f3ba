"""Single-layer capture for ViT vision towers (see capture.py)."""

from vzexp.encoders.capture import LayerCapture, capture_layer, resolve_layer, tower_info

__all__ = ["LayerCapture", "capture_layer", "resolve_layer", "tower_info"]
