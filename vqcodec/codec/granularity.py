"""Content-adaptive granularity: one token per 16, 32 or 64 coded pixels, chosen per region.

The coded grid is cut into blocks of 4×4 positions (64×64 coded pixels). Each block is one token
(granularity 4: "f64"), or each of its 2×2 quarters is one token (granularity 2: "f32") or four
(granularity 1: "f16"). A token of granularity g is stored once, at the top-left position of its
g×g square (its *anchor*), and the decoder copies it over the square, so the decoder network sees
an ordinary index grid: a coarse token is its code repeated. With ``scale`` above 1 the fine
tokens cover 8–12 pixels of the original image: the same three choices give f8 to f64 there.

The map is one symbol per block: 16 for a whole-block token, otherwise a 4-bit mask of the
quarters that are one token each (bit q: quarter q in row-major order). It is coded as binary
flags with adaptive counts (:func:`encode_map`), about 3 bits per block on photos (kodim23: 40 bytes for 96 blocks).

Why anchors at the top-left: the context model codes positions in phases of the 4×4 lattice
(:data:`vqcodec.entropy.context.STAGE_OF_PHASE`), and a block's or quarter's top-left position
always comes in an earlier stage than the rest of its square, so every copy is known before the
context model needs it.

The encoder picks the map by rate–distortion (:func:`choose`): it decodes the image with every
position at each granularity, measures each position's squared error, and merges a square when
its error plus λ × its bits is the lower.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..entropy.coder import AdaptiveFlags, FlagReader, FlagWriter
from ..entropy.context import spread  # noqa: F401  (re-exported: the one copy-over-anchor helper)
from ..errors import BitstreamError
from ..models.vqgan import VQGAN

BLOCK = 4  # positions per side of the largest token
WHOLE = 16  # the map symbol of a block coded as one token
SYMBOLS = 17
GRANULARITIES = (1, 2, 4)  # positions per side of a token
NAMES = {1: "f16", 2: "f32", 4: "f64"}  # at the coded scale


def block_shape(height: int, width: int) -> tuple[int, int]:
    """The map's shape for a grid of ``height × width`` positions."""
    return -(-height // BLOCK), -(-width // BLOCK)


def granularity_of(gmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """``uint8 [h,w]``: the side (1, 2 or 4 positions) of the token each grid position belongs to."""
    r = np.arange(height)[:, None]
    c = np.arange(width)[None, :]
    symbol = np.asarray(gmap, dtype=np.int64)[r // BLOCK, c // BLOCK]
    quarter = (r // 2 % 2) * 2 + c // 2 % 2
    merged = (symbol >> quarter) & 1
    return np.where(symbol == WHOLE, 4, np.where(merged == 1, 2, 1)).astype(np.uint8)


def anchors(gmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """``int64 [h,w]``: the row-major position of each position's anchor (itself for a fine token)."""
    g = granularity_of(gmap, height, width).astype(np.int64)
    r = np.arange(height)[:, None]
    c = np.arange(width)[None, :]
    return (r // g * g) * width + c // g * g


def shares(gmap: np.ndarray, height: int, width: int) -> dict[int, float]:
    """The share of the grid's area coded at each granularity."""
    g = granularity_of(gmap, height, width)
    return {k: float((g == k).mean()) for k in GRANULARITIES}


# -- the map's entropy coding -----------------------------------------------------------------
def _walk(source: np.ndarray, code) -> np.ndarray:
    """Visit the map's flags in order, block by block: the block's whole flag, then (when not
    whole) its four quarter flags. ``code(flags, context, flag)`` codes one flag of ``source``
    and returns it (a decoder's ``source`` is zeros: it returns what it read instead). Contexts
    count the merged squares among the left and upper neighbours. Returns the map."""
    shape = source.shape
    whole = np.zeros((shape[0] + 1, shape[1] + 1), dtype=np.int64)  # padded by one row and column
    merged = np.zeros((2 * shape[0] + 1, 2 * shape[1] + 1), dtype=np.int64)  # quarters, padded
    flags = (AdaptiveFlags(3), AdaptiveFlags(3))
    gmap = np.zeros(shape, dtype=np.uint8)
    for i in range(shape[0]):
        for j in range(shape[1]):
            w = code(flags[0], whole[i, j + 1] + whole[i + 1, j], source[i, j] == WHOLE)
            whole[i + 1, j + 1] = w
            if w:
                gmap[i, j] = WHOLE
                merged[2 * i + 1 : 2 * i + 3, 2 * j + 1 : 2 * j + 3] = 1
                continue
            symbol = int(source[i, j])
            for q in range(4):
                r, c = 2 * i + 1 + q // 2, 2 * j + 1 + q % 2
                m = code(flags[1], merged[r - 1, c] + merged[r, c - 1], (symbol >> q) & 1)
                merged[r, c] = m
                gmap[i, j] |= m << q
    return gmap


def encode_map(gmap: np.ndarray) -> bytes:
    """The map ``[bh,bw]`` (symbols 0…16) → bytes (never empty: an empty record means "no map")."""
    gmap = np.asarray(gmap)
    if gmap.size and (gmap.min() < 0 or gmap.max() >= SYMBOLS):
        raise ValueError(f"map symbols must lie in [0, {SYMBOLS})")
    writer = FlagWriter()
    _walk(gmap, writer)
    return writer.finish()


def decode_map(data: bytes, height: int, width: int) -> np.ndarray:
    """Bytes → the map of a ``height × width`` grid. Raises :class:`BitstreamError` on bad data."""
    try:
        return _walk(np.zeros(block_shape(height, width), dtype=np.uint8), FlagReader(data))
    except Exception as exc:  # constriction reports bad data with assorted built-in exceptions
        raise BitstreamError(f"granularity map is invalid: {exc}") from None


# -- rate–distortion choice -------------------------------------------------------------------
def _blocks(a: np.ndarray) -> np.ndarray:
    """``a [h,w]`` zero-padded to whole blocks."""
    bh, bw = block_shape(*a.shape)
    out = np.zeros((bh * BLOCK, bw * BLOCK))
    out[: a.shape[0], : a.shape[1]] = a
    return out


def _sums(a: np.ndarray, k: int) -> np.ndarray:
    """Sums over aligned ``k×k`` squares (``a``'s sides are multiples of ``k``)."""
    return a.reshape(a.shape[0] // k, k, a.shape[1] // k, k).sum((1, 3))


def choose(errors: dict[int, np.ndarray], bits: dict[int, np.ndarray], lam: float) -> np.ndarray:
    """The map minimising error + ``lam`` × bits, block by block.

    ``errors[g]`` is each position's squared error when every token has granularity ``g``, and
    ``bits[g]`` each position's code length in that grid (a coarse token's is counted once, at
    its anchor). A square is merged when that lowers its cost; the interplay of neighbouring squares
    through the decoder's receptive field is left out, which the final decode then includes.
    """
    errors = {g: _blocks(e) for g, e in errors.items()}
    bits = {g: _blocks(b) for g, b in bits.items()}
    fine = _sums(errors[1] + lam * bits[1], 2)
    quarter = _sums(errors[2], 2) + lam * bits[2][::2, ::2]
    merged = quarter < fine
    best = _sums(np.minimum(fine, quarter), 2)
    whole = _sums(errors[4], 4) + lam * bits[4][::4, ::4] < best
    mask = merged.astype(np.int64)
    symbols = mask[0::2, 0::2] | mask[0::2, 1::2] << 1 | mask[1::2, 0::2] << 2 | mask[1::2, 1::2] << 3
    return np.where(whole, WHOLE, symbols).astype(np.uint8)


def quantize(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Nearest codes of ``z [B,D,h,w]`` at every granularity: ``[B,3,h,w]`` (the order of
    :data:`GRANULARITIES`). A coarse token is the code nearest to the mean latent of its square,
    repeated over it."""
    h, w = z.shape[-2:]
    out = []
    for side in GRANULARITIES:
        pooled = F.avg_pool2d(F.pad(z, (0, -w % side, 0, -h % side), mode="replicate"), side)
        codes = VQGAN.nearest_code(pooled, codebook)
        out.append(codes.repeat_interleave(side, 1).repeat_interleave(side, 2)[:, :h, :w])
    return torch.stack(out, 1)


def mixed(grids: dict[int, np.ndarray], gmap: np.ndarray) -> np.ndarray:
    """The index grid of ``gmap``: from ``grids[g]`` (each position's index when every token has
    granularity ``g``, coarse codes already repeated over their squares) where ``g`` applies."""
    fine = np.asarray(grids[1])
    g = granularity_of(gmap, *fine.shape)
    return np.where(g == 4, grids[4], np.where(g == 2, grids[2], fine))
