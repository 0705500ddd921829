"""Entropy coding: integer symbols ↔ bytes. Knows nothing of networks or files."""

from .coder import decode_symbols, encode_symbols
from .context import ContextTables
from .models import CHOICES, CONTEXT, NAMES, STATIC_PRIOR, UNIFORM, EntropyModel, LevelEntropy
from .prior import StaticPrior

__all__ = [
    "StaticPrior", "encode_symbols", "decode_symbols", "EntropyModel", "LevelEntropy", "NAMES", "STATIC_PRIOR",
    "UNIFORM", "CONTEXT", "CHOICES", "ContextTables",
]
