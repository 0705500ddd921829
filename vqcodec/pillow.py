"""Pillow plugin: ``import vqcodec.pillow`` and every Pillow program reads and writes ``.vqc``.

    >>> from PIL import Image
    >>> import vqcodec.pillow
    >>> Image.open("photo.vqc").size            # header only: no network runs   # doctest: +SKIP
    >>> Image.open("photo.png").save("photo.vqc", level=256)                      # doctest: +SKIP

Opening reads the header alone, so ``size`` and ``mode`` are known at once; ``load()`` (or any
pixel access) decodes with the model named in the file, loaded once and cached. ``save`` takes
``level``, ``scale``, ``bpp``, ``max_bytes``, ``packets``, ``entropy``, ``granularity``, ``tone``, ``model`` and ``device``;
:func:`configure` sets the model (a registered name or a weights file), device and
fidelity–realism setting that ``load`` and ``save`` use when not told otherwise. Bad files raise what Pillow users expect:
``UnidentifiedImageError`` from ``Image.open`` and ``OSError`` from ``load``, with vqcodec's message.
"""

from __future__ import annotations

import io
from typing import IO

from PIL import Image, ImageFile, UnidentifiedImageError

from .api import decode, encode
from .codec.container import MAGIC, read_header
from .errors import VQCodecError

FORMAT = "VQC"
EXTENSION = ".vqc"
MIME = "image/x-vqc"


_defaults: dict[str, str] = {}
_decode_defaults: dict[str, float] = {}


def configure(model: str | None = None, device: str = "auto", realism: float | None = None) -> None:
    """Use ``model`` (default: the one each file names) on ``device`` for every open and save, and
    decode at ``realism`` (0 faithful … 1 detailed; default: the model's)."""
    _defaults.clear()
    _decode_defaults.clear()
    _defaults["device"] = device
    if model is not None:
        _defaults["model"] = str(model)
    if realism is not None:
        _decode_defaults["realism"] = float(realism)


def _accept(prefix: bytes) -> bool:
    return prefix[: len(MAGIC)] == MAGIC


class VqcImageFile(ImageFile.ImageFile):
    """A ``.vqc`` file opened by Pillow: header parsed on open, pixels decoded on first load."""

    format = FORMAT
    format_description = "vqcodec extreme low-bitrate image"

    def _open(self) -> None:
        self._vqc = self.fp.read()
        try:
            header = read_header(self._vqc)
        except VQCodecError as exc:
            raise UnidentifiedImageError(f"{self.filename or 'image'}: {exc}") from None
        self._size = (header.width, header.height)
        self._mode = "RGB"
        self.info["level"] = header.level
        self.info["model"] = header.model_id
        self.tile = []

    def load(self) -> Image.core.PixelAccess | None:
        if self._vqc is not None:
            try:
                image = decode(self._vqc, **_defaults, **_decode_defaults)
            except VQCodecError as exc:
                raise OSError(f"{self.filename or 'image'}: {exc}") from None
            self._vqc = None
            if self.fp and self._exclusive_fp:
                self.fp.close()
            self.fp = io.BytesIO(image.tobytes())
            self.tile = [ImageFile._Tile("raw", (0, 0, *self.size), 0, "RGB")]
        return super().load()


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    keys = ("level", "scale", "bpp", "max_bytes", "packets", "entropy", "granularity", "tone", "model", "device")
    options = {**_defaults, **{k: im.encoderinfo[k] for k in keys if k in im.encoderinfo}}
    try:
        data = encode(im, **options)
    except VQCodecError as exc:
        raise OSError(str(exc)) from None
    fp.write(data)


Image.register_open(FORMAT, VqcImageFile, _accept)
Image.register_save(FORMAT, _save)
Image.register_extension(FORMAT, EXTENSION)
Image.register_mime(FORMAT, MIME)
