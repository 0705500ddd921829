"""Operating points and rate control: which (scale, level) codes an image within a byte budget.

A file's bits grow with its grid (the scale squared) and with log2 of the level, so the same
budget buys a fine level at a smaller scale or a coarse level at full size. For a budget, every
scale in :data:`SCALES` offers the file of its largest level that fits (found by bisection); of
those that fill at least :data:`FILL` of the budget, the one whose decode is closest to the image
(PSNR at full size, the fidelity that matters at these rates) wins. Every size is a real file size: a budget is never exceeded.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..errors import VQCodecError
from ..metrics import psnr
from .image_io import image_to_tensor, resample

if TYPE_CHECKING:
    from .codec import Codec, EncodedImage

SCALES = (1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25)
FILL = 0.9  # a candidate must use this share of the budget, so the bytes asked for are spent


def coded_size(width: int, height: int, scale: float | None) -> tuple[int, int]:
    """The size an image of ``width × height`` is coded at for ``scale`` in (0, 1]."""
    if scale is None:
        return width, height
    if not 0 < scale <= 1:
        raise VQCodecError(f"scale must be in (0, 1], got {scale}")
    return max(1, round(width * scale)), max(1, round(height * scale))


def budget_bytes(width: int, height: int, bpp: float | None = None, max_bytes: int | None = None) -> int:
    """The byte budget of a ``bpp`` target (whole file, headers included) and/or a ``max_bytes`` cap."""
    limits = []
    if bpp is not None:
        if not bpp > 0:
            raise VQCodecError(f"bpp must be positive, got {bpp}")
        limits.append(math.floor(bpp * width * height / 8))
    if max_bytes is not None:
        if max_bytes < 1:
            raise VQCodecError(f"max_bytes must be positive, got {max_bytes}")
        limits.append(int(max_bytes))
    return min(limits)


def _largest_fitting(
    codec: Codec, grids: dict, image_size: tuple[int, int], coded: tuple[int, int], budget: int,
    packets: int | None, packet_bytes: int | None, entropy: str,
) -> EncodedImage | None:
    """The file of the largest level of ``grids`` within ``budget``, by bisection over the levels
    (a file grows with its level): a few encodes instead of one per level, which matters when each
    is a context-model pass. Whatever it returns fits."""
    levels = sorted(grids)
    lo, hi, best = 0, len(levels) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        file = codec.pack(grids[levels[mid]][0].numpy(), levels[mid], image_size, coded, packets, packet_bytes, entropy)
        if len(file.data) <= budget:
            best, lo = file, mid + 1
        else:
            hi = mid - 1
    return best


def encode_within(
    codec: Codec, image: np.ndarray, budget: int, packets: int | None = None, packet_bytes: int | None = None,
    entropy: str = "auto",
) -> EncodedImage:
    """The best file of at most ``budget`` bytes for ``image`` (``uint8 [H,W,3]``)."""
    height, width = image.shape[:2]
    candidates: list[EncodedImage] = []
    sizes_done: set[tuple[int, int]] = set()
    for scale in SCALES:
        size = coded_size(width, height, scale)
        if size in sizes_done:  # tiny images: several scales round to one size
            continue
        sizes_done.add(size)
        grids = codec.runner.encode_levels(image_to_tensor(np.asarray(resample(image, size))), codec.levels)
        best = _largest_fitting(codec, grids, (width, height), size, budget, packets, packet_bytes, entropy)
        if best is not None:
            candidates.append(best)
            if len(candidates[-1].data) < FILL * budget and any(len(c.data) >= FILL * budget for c in candidates):
                break  # smaller scales only get smaller
    if not candidates:
        raise VQCodecError(f"no operating point fits {budget} bytes for this {width}x{height} image")
    filling = [c for c in candidates if len(c.data) >= FILL * budget] or [max(candidates, key=lambda c: len(c.data))]
    if len(filling) == 1:
        return filling[0]
    x = image_to_tensor(image)
    return max(filling, key=lambda c: float(psnr(image_to_tensor(codec.decode(c.data)), x)[0]))
