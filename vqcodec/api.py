"""The Python API: one-call ``encode``/``decode`` over a cached :class:`~vqcodec.codec.Codec`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from PIL import Image

from .codec import Codec
from .codec.container import read_header
from .codec.image_io import ImageLike
from .registry import DEFAULT_MODEL, model_named_by_file


@lru_cache(maxsize=4)
def _codec(model: str, device: str) -> Codec:
    return Codec.from_pretrained(model, device=device)


def encode(
    image: ImageLike, level: int | None = None, model: str | Path | None = None, device: str = "auto", **options
) -> bytes:
    """Compress an image (PIL image, ``uint8 [H,W,3]`` array or path) to ``.vqc`` bytes; ``options``
    as :meth:`Codec.encode` (``scale``, ``bpp``, ``max_bytes``, ``packets``, ``packet_bytes``, ``entropy``, ``granularity``, ``tone``)."""
    return _codec(str(model or DEFAULT_MODEL), device).encode(image, level=level, **options).data


def decode(data: bytes, model: str | Path | None = None, device: str = "auto", **options) -> Image.Image:
    """Decompress ``.vqc`` bytes; the model named in the file is used unless ``model`` is given.
    Lost packets are restored; ``options`` as :meth:`Codec.decode` (``restore``, ``restore_steps``,
    ``realism``: 0 the most faithful picture … 1 the most detailed)."""
    name = str(model) if model else model_named_by_file(read_header(data).model_id)
    return _codec(name, device).decode(data, **options)
