"""Encoder-side token compression strategies."""

from vzexp.compress.base import CompressionResult, Compressor
from vzexp.compress.none import NoCompression
from vzexp.compress.visionzip import Dominant, VisionZip

__all__ = ["CompressionResult", "Compressor", "Dominant", "NoCompression", "VisionZip"]
