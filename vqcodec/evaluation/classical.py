"""Classical codecs through Pillow and its plugins, driven to a target bitrate.

Two ways of meeting a target bpp (bits over the *original* pixel count, headers included):

- plain: the highest quality setting whose full-size file is not larger than the target;
- resampled: downscale (LANCZOS) → encode → decode → upscale (LANCZOS), trying several scales and
  keeping the one with the best score under the target — what a careful user of these codecs
  does at 0.01–0.05 bpp, where most of them cannot go at full resolution.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

SCALES = (1.0, 0.7, 0.5, 0.35, 0.25, 0.18, 0.125)


@dataclass(frozen=True)
class ClassicalCodec:
    name: str
    pil_format: str
    qualities: tuple[int, ...]  # ascending; file size grows with quality
    options: tuple[tuple[str, object], ...] = ()

    def encode(self, image: Image.Image, quality: int) -> bytes:
        buf = io.BytesIO()
        image.save(buf, format=self.pil_format, quality=quality, **dict(self.options))
        return buf.getvalue()

    @staticmethod
    def decode(data: bytes) -> Image.Image:
        im = Image.open(io.BytesIO(data))
        im.load()
        return im.convert("RGB")


def available_codecs() -> dict[str, ClassicalCodec]:
    """The codecs this installation can write, by name (HEIC and JPEG XL need their plugins)."""
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except ImportError:
        pass
    try:
        import pillow_jxl  # noqa: F401  (importing registers the JXL format)
    except ImportError:
        pass
    codecs = {
        "jpeg": ClassicalCodec("jpeg", "JPEG", tuple(range(1, 96)), (("optimize", True),)),
        "webp": ClassicalCodec("webp", "WEBP", tuple(range(0, 96)), (("method", 6),)),
        "avif": ClassicalCodec("avif", "AVIF", tuple(range(0, 96)), (("speed", 6),)),
        "heic": ClassicalCodec("heic", "HEIF", tuple(range(0, 96))),
        "jxl": ClassicalCodec("jxl", "JXL", tuple(range(1, 96))),
    }
    Image.init()  # Pillow registers its built-in writers lazily
    return {name: c for name, c in codecs.items() if c.pil_format in Image.SAVE}


@dataclass
class Operating:
    """One encoded operating point: setting, file and full-size reconstruction."""

    codec: str
    quality: int
    scale: float
    data: bytes
    bpp: float
    reconstruction: Image.Image


class Trials:
    """All encodes of one image, memoised, so many targets share the quality searches."""

    def __init__(self, image: Image.Image, scales: tuple[float, ...] = SCALES) -> None:
        self.image = image
        self.pixels = image.width * image.height
        self.scales = scales
        self._small: dict[float, Image.Image] = {}
        self._files: dict[tuple[str, float, int], bytes] = {}

    def small(self, scale: float) -> Image.Image:
        if scale not in self._small:
            w, h = self.image.size
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            self._small[scale] = self.image if scale == 1.0 else self.image.resize(size, Image.LANCZOS)
        return self._small[scale]

    def encode(self, codec: ClassicalCodec, scale: float, quality: int) -> bytes:
        key = (codec.name, scale, quality)
        if key not in self._files:
            self._files[key] = codec.encode(self.small(scale), quality)
        return self._files[key]

    def lowest_bpp(self, codec: ClassicalCodec, scale: float = 1.0) -> float:
        return len(self.encode(codec, scale, codec.qualities[0])) * 8 / self.pixels

    def at_bpp(self, codec: ClassicalCodec, target_bpp: float, scale: float = 1.0) -> Operating | None:
        """Highest quality whose file fits the target (binary search), or None if none does."""
        budget = target_bpp * self.pixels / 8
        q = codec.qualities
        if len(self.encode(codec, scale, q[0])) > budget:
            return None
        lo, hi, best = 1, len(q) - 1, 0
        while lo <= hi:
            mid = (lo + hi) // 2
            if len(self.encode(codec, scale, q[mid])) <= budget:
                best, lo = mid, mid + 1
            else:
                hi = mid - 1
        data = self.encode(codec, scale, q[best])
        rec = codec.decode(data)
        if rec.size != self.image.size:
            rec = rec.resize(self.image.size, Image.LANCZOS)
        return Operating(codec.name, q[best], scale, data, len(data) * 8 / self.pixels, rec)

    def resampled_at_bpp(
        self, codec: ClassicalCodec, target_bpp: float, score: Callable[[Image.Image], float]
    ) -> Operating | None:
        """Lowest-``score`` operating point over all scales within the target."""
        best, best_score = None, float("inf")
        for scale in self.scales:
            point = self.at_bpp(codec, target_bpp, scale)
            if point is None:
                continue
            s = score(point.reconstruction)
            if s < best_score:
                best, best_score = point, s
        return best
