"""The codec: container format, image I/O rules and the encode/decode pipeline."""

from .codec import Codec
from .container import Header

__all__ = ["Codec", "Header"]
