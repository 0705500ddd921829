"""The codec: container format, image I/O rules, the pipeline's stages and their composition."""

from .codec import Codec, DecodedImage, DecodeReport, EncodedImage
from .container import Header

__all__ = ["Codec", "EncodedImage", "DecodedImage", "DecodeReport", "Header"]
