"""Networks: image ↔ grid of codebook indices. They know nothing of files or bitstreams."""

from .config import ModelConfig
from .vqgan import VQGAN

__all__ = ["ModelConfig", "VQGAN"]
