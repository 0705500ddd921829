"""Entropy coding: integer symbols ↔ bytes. Knows nothing of networks or files."""

from .coder import decode_symbols, encode_symbols
from .prior import STATIC_PRIOR, UNIFORM, StaticPrior

__all__ = ["StaticPrior", "encode_symbols", "decode_symbols", "STATIC_PRIOR", "UNIFORM"]
