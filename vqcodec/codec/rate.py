"""Operating points and rate control: which (scale, level, granularity map, tone layer) codes an image within a byte budget.

A file's bits grow with its grid (the scale squared) and with log2 of the level, so the same
budget buys a fine level at a smaller scale or a coarse level at full size. For a budget, every
scale in :data:`FIXED_SCALES` offers the file of its largest level that fits (found by bisection); of
those that fill at least :data:`FILL` of the budget, the one whose decode is closest to the image
(PSNR at full size, the fidelity that matters at these rates) wins. When even the finest level at
full size falls short of that share (a smooth photo at a generous budget), the fixed grid tries
the scales above full size in turn until one fills it, and the file with the best PSNR among
those and the full-size one wins: the extra bytes buy detail on smooth photos, while on detailed
ones the larger scale affords only a coarser level and loses; the adaptive search's files are then
weighed the same way, by PSNR alone against the full-size file. Every size is a real file size: a
budget is never exceeded.

With adaptive granularity the map's λ is a third, continuous knob: coarse tokens free bits for a
larger scale or a finer level. From the fixed grid's winner (scale, level), the adaptive search
tries that level at that scale and the :data:`UPSCALES` steps above it, and the next finer level
at that scale; at each, the smallest λ of :data:`LAMBDAS` whose file fits. Each try decodes the
image three times (the map is chosen from measured errors), so adaptive rate control costs
about twelve decodes more than the fixed grid's.

Last, a tone layer (:mod:`.tone`) may take some of the winner's bytes: see :func:`_add_tone`.
It decodes each file with fewer tokens it tries; the winner's own decode comes from the ranking.
Where the fixed grid weighed larger scales against its full-size file, the bytes a larger scale
spends on tokens could go to a layer instead, so the best file of the other kind (larger or full
size) is offered a layer too and the closer result wins.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..errors import VQCodecError
from ..metrics import psnr
from . import tone
from .container import MAX_UPSCALE
from .image_io import image_to_tensor, image_to_uint8_tensor, resample
from .tiling import progress_bar

if TYPE_CHECKING:
    from collections.abc import Callable

    from tqdm import tqdm

    from .codec import Codec, EncodedImage

SCALES = (2.0, 1.5, 1.25, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25)
FIXED_SCALES = SCALES[3:]  # the fixed grid tries the scales above these only when full size cannot fill the budget
# (the adaptive search tries them from its own starting point)
UPSCALES = 2  # scales above the fixed grid's that the adaptive search tries
LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0)  # relative: see GranularChoices
FILL = 0.9  # a candidate must use this share of the budget, so the bytes asked for are spent
TONE_BLOCKS = (32, 64)  # tone-layer cells rate control tries, in pixels of the image
TONE_STEPS = ((2, 4), (3, 6), (4, 8), (6, 12), (10, 12), (16, 12))  # (luma, chroma), finest first; chroma steps
# above 12 paint visible false colour (a green eye on kodim04 at 20)
TONE_MAX_CELLS = 65536  # per plane: larger grids would cost more than they could buy
TONE_OVERHEAD = 5  # header bytes a tone record adds beside its value (record head, extension length)
TONE_TRIES = 2
# what doubling the tokens' bytes is taken to buy: on Kodak about 1 dB (0.015-0.04 bpp); set high to try only clear wins
DB_PER_DOUBLING = 1.5
DEFAULT_TONE_LAYER = (32, (4, 8))  # (block, steps) of a tone layer at a fixed operating point


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
    entropy: str = "auto", granularity: str = "16", tone_mode: str = "off",
) -> EncodedImage:
    """The best file of at most ``budget`` bytes for ``image`` (``uint8 [H,W,3]``); with the codec's
    ``progress``, a bar on a terminal names the operating point being tried (a large photo takes minutes)."""
    with progress_bar(None, "rate control", codec.runner.progress, unit="step") as bar:
        return _search(codec, image, budget, packets, packet_bytes, entropy, granularity, tone_mode, bar)


def _search(
    codec: Codec, image: np.ndarray, budget: int, packets: int | None, packet_bytes: int | None, entropy: str,
    granularity: str, tone_mode: str, bar: tqdm,
) -> EncodedImage:
    def stage(text: str) -> None:
        bar.set_postfix_str(text)
        bar.update()

    height, width = image.shape[:2]
    levels = sorted(codec.levels)
    candidates: list[EncodedImage] = []
    shrink: dict[bytes, Callable[[int], EncodedImage | None]] = {}  # a candidate's point, at a smaller budget
    sizes_done: set[tuple[int, int]] = set()
    ranking = _Ranking(codec, image, budget)
    fills = ranking.fills

    def fixed_point(scale: float) -> EncodedImage | None:
        """The largest fixed-grid file at ``scale`` that fits, added to the candidates."""
        size = coded_size(width, height, scale)
        if size in sizes_done:  # tiny images: several scales round to one size
            return None
        sizes_done.add(size)
        stage(f"scale {scale:g}")
        grids = codec.runner.encode_levels(image_to_tensor(np.asarray(resample(image, size))), levels)

        def fixed(k: int) -> EncodedImage:
            return codec.pack(grids[levels[k]][0].numpy(), levels[k], (width, height), size, packets, packet_bytes, entropy)

        file = _fit(_bisect(fixed, len(levels), budget))
        if file is not None:
            candidates.append(file)
            shrink[file.data] = lambda b: _fit(_bisect(fixed, len(levels), b))
        return file

    for scale in FIXED_SCALES:
        file = fixed_point(scale)
        if file is not None and not fills(file) and any(fills(c) for c in candidates):
            break  # smaller scales only get smaller
    if not candidates:
        raise VQCodecError(f"no operating point fits {budget} bytes for this {width}x{height} image")
    # when the finest level at full size falls short of the budget, larger scales spend it, which
    # pays on smooth photos and not on detailed ones (a coarser level), so PSNR alone decides
    # among the files in the pool: the full-size one and those above full size
    short = not any(fills(c) for c in candidates)
    pool = [max(candidates, key=lambda c: len(c.data))] if short else []
    if granularity == "16" and short:
        for scale in reversed(SCALES[: len(SCALES) - len(FIXED_SCALES)]):
            file = fixed_point(scale)
            if file is None:
                break
            pool.append(file)
            if fills(file):
                break
    stage("ranking")
    winner = ranking.best(pool, fill=False) if pool else ranking.best(candidates)
    if granularity == "adaptive":
        at = min(range(len(SCALES)), key=lambda i: abs(coded_size(width, height, SCALES[i])[0] - winner.header.coded_size[0]))
        won = winner.header.level
        finer = [v for v in levels if v > won][:1]
        points = [(SCALES[i], won) for i in range(at, max(-1, at - UPSCALES - 1), -1)] + [(SCALES[at], v) for v in finer]
        for scale, level in points:
            stage(f"scale {scale:g}, level {level}, adaptive")
            make = _adaptive(codec, image, coded_size(width, height, scale), level, packets, packet_bytes, entropy)
            file = _fit(_bisect(make, len(LAMBDAS), budget))
            if file is not None:
                candidates.append(file)
                if short:
                    pool.append(file)
                shrink[file.data] = lambda b, make=make: _fit(_bisect(make, len(LAMBDAS), b))
        winner = ranking.best(pool, fill=False) if pool else ranking.best(candidates)
    if tone_mode == "off":
        return winner
    stage("tone layer")
    starts = [winner]
    others = [c for c in pool if ranking.larger(c) != ranking.larger(winner)]
    if others:  # a layer on the runner-up of the other kind may beat one on the winner
        starts.append(max(others, key=ranking.score))
    toned = [_add_tone(codec, image, budget, start, ranking, shrink[start.data], tone_mode == "on") for start in starts]
    return max(toned, key=lambda scored: scored[1])[0]


def _fit(found: tuple[int, EncodedImage] | None) -> EncodedImage | None:
    return None if found is None else found[1]


def _add_tone(
    codec: Codec, image: np.ndarray, budget: int, winner: EncodedImage, ranking: _Ranking,
    shrink: Callable[[int], EncodedImage | None], always: bool,
) -> tuple[EncodedImage, float]:
    """``winner`` (decoded and measured through ``ranking``), or a file of the same operating point with fewer
    tokens and a tone layer, if that is closer to the image (with ``always``, the best file that has
    a tone layer), with its PSNR (minus infinity for ``winner`` under ``always``).

    Every tone option (:data:`TONE_BLOCKS` × :data:`TONE_STEPS`) is measured on the winner's
    decode; the :data:`TONE_TRIES` with the best gain net of what their bytes would have bought
    as tokens (:data:`DB_PER_DOUBLING`) are tried for real: the tokens shrink to leave room, the
    layer is refitted to their decode, and the result is scored by its PSNR."""
    height, width = image.shape[:2]
    quality = ranking.quality
    decoded = ranking.decode(winner)
    base = quality(decoded)
    options = []
    for block in TONE_BLOCKS:
        if np.prod(tone.grid_shape(width, height, block)) > TONE_MAX_CELLS:
            continue
        correction = tone.fit(image, decoded, block)
        for steps in TONE_STEPS:
            layer = tone.quantize(correction, block, steps)
            cost = len(tone.encode_layer(layer)) + TONE_OVERHEAD
            if cost >= budget:
                continue
            gain = quality(tone.apply_layer(decoded, layer)) - base
            options.append((gain - DB_PER_DOUBLING * math.log2(budget / (budget - cost)), block, steps, cost))
    options.sort(reverse=True)
    best, best_score = winner, -math.inf if always else base
    for net, block, steps, cost in options[:TONE_TRIES]:
        if net <= 0 and not always:
            break
        tokens = winner if len(winner.data) + cost <= budget else shrink(budget - cost - cost // 16)
        if tokens is None:
            continue
        token_decode = decoded if tokens is winner else np.asarray(codec.decode(tokens.data))
        correction = tone.fit(image, token_decode, block)
        for coarser in TONE_STEPS[TONE_STEPS.index(steps):]:  # a refitted layer may need a coarser step to fit
            layer = tone.quantize(correction, block, coarser)
            try:
                file = codec.with_tone(tokens, layer)
            except VQCodecError:  # the header cannot hold it beside the map
                continue
            if len(file.data) <= budget:
                score = quality(tone.apply_layer(token_decode, layer))
                if score > best_score and len(file.data) >= min(FILL * budget, len(winner.data)):
                    best, best_score = file, score
                break
    return best, best_score


class _Ranking:
    """Picks among candidate files: those that fill :data:`FILL` of the budget (or else the
    largest; all of them without ``fill``), and of those the one whose decode has the highest PSNR;
    each file is decoded once to be scored. The best decode of each kind (coded above full size or
    not) is kept for the tone step, which starts from those; the rest are not (a full-size decode of
    a 48 MP photo is 144 MB)."""

    def __init__(self, codec: Codec, image: np.ndarray, budget: int) -> None:
        self.codec, self.budget = codec, budget
        self.x = image_to_tensor(image)
        self.width = image.shape[1]
        self.scores: dict[bytes, float] = {}
        self.kept: dict[bool, tuple[bytes, np.ndarray]] = {}

    def larger(self, file: EncodedImage) -> bool:
        return file.header.coded_size[0] > self.width

    def score(self, file: EncodedImage) -> float:
        if file.data not in self.scores:
            decoded = np.asarray(self.codec.decode(file.data))
            self.scores[file.data] = score = self.quality(decoded)
            kept = self.kept.get(self.larger(file))
            if kept is None or score > self.scores[kept[0]]:  # of equal ones the first, as max() picks
                self.kept[self.larger(file)] = (file.data, decoded)
        return self.scores[file.data]

    def quality(self, decoded: np.ndarray) -> float:
        """PSNR of ``decoded`` against the image."""
        return float(psnr(image_to_tensor(decoded), self.x)[0])

    def decode(self, file: EncodedImage) -> np.ndarray:
        kept = self.kept.get(self.larger(file))
        return kept[1] if kept is not None and kept[0] == file.data else np.asarray(self.codec.decode(file.data))

    def fills(self, file: EncodedImage | None) -> bool:
        return file is not None and len(file.data) >= FILL * self.budget

    def best(self, candidates: list[EncodedImage], fill: bool = True) -> EncodedImage:
        pool = [c for c in candidates if self.fills(c)] if fill else candidates
        pool = pool or [max(candidates, key=lambda c: len(c.data))]
        return pool[0] if len(pool) == 1 else max(pool, key=self.score)


def _adaptive(
    codec: Codec, image: np.ndarray, size: tuple[int, int], level: int, packets: int | None,
    packet_bytes: int | None, entropy: str,
) -> Callable[[int], EncodedImage]:
    """``make(k)``: the adaptive-granularity file at coded ``size`` and ``level`` with the k-th
    smallest λ of :data:`LAMBDAS` counted from the largest (k grows → more fine tokens → a larger file)."""
    height, width = image.shape[:2]
    (choices,) = codec.granular_choices(image_to_uint8_tensor(np.asarray(resample(image, size))), level)

    def make(k: int) -> EncodedImage:
        indices, gmap = choices.grid(LAMBDAS[-1 - k])
        return codec.pack(indices, level, (width, height), size, packets, packet_bytes, entropy, gmap)

    return make
