"""Operating points and rate control: which (scale, level, granularity map) codes an image within a byte budget.

A file's bits grow with its grid (the scale squared) and with log2 of the level, so the same
budget buys a fine level at a smaller scale or a coarse level at full size. For a budget, every
scale in :data:`SCALES` offers the file of its largest level that fits (found by bisection); of
those that fill at least :data:`FILL` of the budget, the one whose decode is closest to the image
(PSNR at full size, the fidelity that matters at these rates) wins. Every size is a real file size:
a budget is never exceeded.

With adaptive granularity the map's λ is a third, continuous knob: coarse tokens free bits for a
larger scale or a finer level. From the fixed grid's winner (scale, level), the adaptive search
tries that level at that scale and the :data:`UPSCALES` steps above it, and the next finer level
at that scale; at each, the smallest λ of :data:`LAMBDAS` whose file fits. Each try decodes the
image three times (the map is chosen from measured errors), so adaptive rate control costs
about twelve decodes more than the fixed grid's.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..errors import VQCodecError
from ..metrics import psnr
from .container import MAX_UPSCALE
from .image_io import image_to_tensor, image_to_uint8_tensor, resample

if TYPE_CHECKING:
    from collections.abc import Callable

    from .codec import Codec, EncodedImage

SCALES = (2.0, 1.5, 1.25, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25)
FIXED_SCALES = SCALES[3:]  # the f16 grid never gains from coding an upscaled image
UPSCALES = 2  # scales above the fixed grid's that the adaptive search tries
LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0)  # relative: see GranularChoices
FILL = 0.9  # a candidate must use this share of the budget, so the bytes asked for are spent


def coded_size(width: int, height: int, scale: float | None) -> tuple[int, int]:
    """The size an image of ``width × height`` is coded at for ``scale`` in (0, 2]."""
    if scale is None:
        return width, height
    if not 0 < scale <= MAX_UPSCALE:
        raise VQCodecError(f"scale must be in (0, {MAX_UPSCALE}], got {scale}")
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


def _bisect(make: Callable[[int], EncodedImage], count: int, budget: int) -> tuple[int, EncodedImage] | None:
    """``(i, make(i))`` for the largest ``i < count`` whose file fits ``budget``, by bisection (a
    file grows with ``i``): a few encodes instead of one per step, which matters when each is a
    context-model pass. Whatever it returns fits."""
    lo, hi, best = 0, count - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        file = make(mid)
        if len(file.data) <= budget:
            best, lo = (mid, file), mid + 1
        else:
            hi = mid - 1
    return best


def encode_within(
    codec: Codec, image: np.ndarray, budget: int, packets: int | None = None, packet_bytes: int | None = None,
    entropy: str = "auto", granularity: str = "16",
) -> EncodedImage:
    """The best file of at most ``budget`` bytes for ``image`` (``uint8 [H,W,3]``)."""
    height, width = image.shape[:2]
    levels = sorted(codec.levels)
    candidates: list[EncodedImage] = []
    sizes_done: set[tuple[int, int]] = set()
    for scale in FIXED_SCALES:
        size = coded_size(width, height, scale)
        if size in sizes_done:  # tiny images: several scales round to one size
            continue
        sizes_done.add(size)
        grids = codec.runner.encode_levels(image_to_tensor(np.asarray(resample(image, size))), levels)

        def fixed(k: int, grids=grids, size=size) -> EncodedImage:
            return codec.pack(grids[levels[k]][0].numpy(), levels[k], (width, height), size, packets, packet_bytes, entropy)

        best = _bisect(fixed, len(levels), budget)
        if best is not None:
            candidates.append(best[1])
            if len(candidates[-1].data) < FILL * budget and any(len(c.data) >= FILL * budget for c in candidates):
                break  # smaller scales only get smaller
    if not candidates:
        raise VQCodecError(f"no operating point fits {budget} bytes for this {width}x{height} image")
    ranking = _Ranking(codec, image, budget)
    winner = ranking.best(candidates)
    if granularity != "adaptive":
        return winner
    at = min(range(len(SCALES)), key=lambda i: abs(coded_size(width, height, SCALES[i])[0] - winner.header.coded_size[0]))
    won = winner.header.level
    finer = [v for v in levels if v > won][:1]
    points = [(SCALES[i], won) for i in range(at, max(-1, at - UPSCALES - 1), -1)] + [(SCALES[at], v) for v in finer]
    for scale, level in points:
        file = _adaptive(codec, image, budget, coded_size(width, height, scale), level, packets, packet_bytes, entropy)
        if file is not None:
            candidates.append(file)
    return ranking.best(candidates)


class _Ranking:
    """Picks among candidate files: those that fill :data:`FILL` of the budget (or else the
    largest), and of those the one whose decode has the highest PSNR; each file is decoded once."""

    def __init__(self, codec: Codec, image: np.ndarray, budget: int) -> None:
        self.codec, self.budget = codec, budget
        self.x = image_to_tensor(image)
        self.scores: dict[bytes, float] = {}

    def score(self, file: EncodedImage) -> float:
        if file.data not in self.scores:
            self.scores[file.data] = float(psnr(image_to_tensor(self.codec.decode(file.data)), self.x)[0])
        return self.scores[file.data]

    def best(self, candidates: list[EncodedImage]) -> EncodedImage:
        filling = [c for c in candidates if len(c.data) >= FILL * self.budget]
        filling = filling or [max(candidates, key=lambda c: len(c.data))]
        return filling[0] if len(filling) == 1 else max(filling, key=self.score)


def _adaptive(
    codec: Codec, image: np.ndarray, budget: int, size: tuple[int, int], level: int, packets: int | None,
    packet_bytes: int | None, entropy: str,
) -> EncodedImage | None:
    """The adaptive-granularity file at coded ``size`` and ``level`` with the smallest λ of
    :data:`LAMBDAS` (the most fine tokens) that fits ``budget``, or None."""
    height, width = image.shape[:2]
    choices = codec.granular_choices(image_to_uint8_tensor(np.asarray(resample(image, size))), level)

    def make(k: int) -> EncodedImage:  # k grows → λ falls → the file grows
        indices, gmap = choices.grid(LAMBDAS[-1 - k])
        return codec.pack(indices, level, (width, height), size, packets, packet_bytes, entropy, gmap)

    best = _bisect(make, len(LAMBDAS), budget)
    return None if best is None else best[1]
