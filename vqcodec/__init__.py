"""vqcodec: extreme low-bitrate image compression with fine-tuned VQGAN codebooks.

>>> import vqcodec
>>> data = vqcodec.encode("photo.png", level=256)     # doctest: +SKIP
>>> image = vqcodec.decode(data)                       # doctest: +SKIP
"""

from .api import decode, encode
from .codec import Codec, DecodedImage, DecodeReport, EncodedImage
from .errors import (
    BitstreamError,
    ImageError,
    ModelMismatchError,
    UnsupportedVersionError,
    VQCodecError,
    WeightsError,
)

__version__ = "0.1.0"

__all__ = [
    "encode", "decode", "Codec", "EncodedImage", "DecodedImage", "DecodeReport",
    "VQCodecError", "BitstreamError", "UnsupportedVersionError",
    "ModelMismatchError", "ImageError", "WeightsError", "__version__",
]
