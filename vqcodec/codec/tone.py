"""The tone layer: a coarse, coded correction of the decode's low frequencies.

At extreme rates one token covers 16×16 coded pixels or more, and a token's code fixes its colour
only roughly: smooth backdrops and skies decode as patches of slightly wrong hue that change from
token to token. The tone layer sends what the decode got wrong at a scale far coarser than the
tokens: a grid of corrections, one per ``block × block`` pixels of the original image, in YCbCr
(chroma quantized more coarsely than luma). The decoder upsamples the grid linearly (half-pixel
centres, edges clamped) and adds it to its picture, so the correction is smooth and cannot add
blocks of its own.

The encoder fits the grid by least squares to the difference between the image and its decode at
the default realism (the same decode the decoder makes, up to float rounding: the layer only adds,
so a slightly different decode is corrected just as well), quantizes it, and codes the integers with
adaptive binary flags (:class:`~vqcodec.entropy.coder.AdaptiveFlags`): whether a value is zero
(context: its left and upper neighbours), its sign (context: the left neighbour's), then its
magnitude in unary. Large images are processed in strips of rows, so memory stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..entropy.coder import AdaptiveFlags, FlagReader, FlagWriter
from ..errors import BitstreamError

BLOCKS = (16, 32, 64, 128, 256)  # pixels of the original image per correction cell (side)
MAX_VALUE = 64  # quantized magnitudes are clipped here: a larger correction is no tone
ROWS = 256  # image rows per strip
# BT.601 full-range RGB → YCbCr (without the chroma offset: corrections are differences)
YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
RGB = np.linalg.inv(YCBCR)


@dataclass(frozen=True)
class ToneLayer:
    """``values int [3,gh,gw]``: the correction in Y, Cb, Cr, in units of ``steps`` (luma, chroma)
    8-bit code values, one value per ``block``-pixel cell of the original image."""

    block: int
    steps: tuple[int, int]
    values: np.ndarray

    def correction(self) -> np.ndarray:
        """The dequantized YCbCr correction, ``float64 [3,gh,gw]`` in 8-bit code values."""
        return self.values * _plane_steps(self.steps)


def _plane_steps(steps: tuple[int, int]) -> np.ndarray:
    """``[3,1,1]``: the quantizer step of the Y, Cb and Cr planes."""
    return np.array([steps[0], steps[1], steps[1]], dtype=np.float64)[:, None, None]


def grid_shape(width: int, height: int, block: int) -> tuple[int, int]:
    return -(-height // block), -(-width // block)


def interpolation(n_out: int, n_in: int) -> np.ndarray:
    """``[n_out, n_in]``: linear interpolation of ``n_in`` samples to ``n_out`` (half-pixel
    centres, edges clamped), the upsampler the decoder applies to the grid."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    out = np.zeros((n_out, n_in))
    np.add.at(out, (np.arange(n_out), lo), 1 - frac)
    np.add.at(out, (np.arange(n_out), hi), frac)
    return out


def fit(image: np.ndarray, decoded: np.ndarray, block: int) -> np.ndarray:
    """The least-squares YCbCr correction grid ``float64 [3,gh,gw]`` (8-bit code values) that,
    upsampled, brings ``decoded`` closest to ``image`` (both ``uint8 [H,W,3]``)."""
    height, width = image.shape[:2]
    gh, gw = grid_shape(width, height, block)
    rows_inv = np.linalg.pinv(interpolation(height, gh))  # [gh, H]
    cols_inv = np.linalg.pinv(interpolation(width, gw))  # [gw, W]
    partial = np.zeros((3, gh, width))
    for top in range(0, height, ROWS):
        diff = image[top : top + ROWS].astype(np.float64) - decoded[top : top + ROWS]
        partial += rows_inv[:, top : top + ROWS] @ diff.transpose(2, 0, 1)
    rgb = partial @ cols_inv.T  # [3, gh, gw]
    return np.einsum("dc,cgw->dgw", YCBCR, rgb)


def quantize(correction: np.ndarray, block: int, steps: tuple[int, int]) -> ToneLayer:
    values = np.clip(np.round(correction / _plane_steps(steps)), -MAX_VALUE, MAX_VALUE).astype(np.int64)
    return ToneLayer(block, (int(steps[0]), int(steps[1])), values)


def layer_for(image: np.ndarray, decoded: np.ndarray, block: int, steps: tuple[int, int]) -> ToneLayer:
    """The layer that corrects ``decoded`` towards ``image`` (both ``uint8 [H,W,3]``)."""
    return quantize(fit(image, decoded, block), block, steps)


def apply_layer(decoded: np.ndarray, layer: ToneLayer) -> np.ndarray:
    """``decoded uint8 [H,W,3]`` with the layer's correction added: a new ``uint8`` array."""
    height, width = decoded.shape[:2]
    rows = interpolation(height, layer.values.shape[1]).astype(np.float32)
    cols = interpolation(width, layer.values.shape[2])
    rgb = (np.einsum("cd,dgw->cgw", RGB, layer.correction()) @ cols.T).astype(np.float32)  # [3, gh, W]
    out = np.empty_like(decoded)
    for top in range(0, height, ROWS):
        delta = (rows[top : top + ROWS] @ rgb).transpose(1, 2, 0)  # [rows, W, 3]
        out[top : top + ROWS] = np.clip(np.rint(decoded[top : top + ROWS] + delta), 0, 255).astype(np.uint8)
    return out


# -- coding -------------------------------------------------------------------------------------
def _walk(values: np.ndarray, code) -> np.ndarray:
    """Visit the values plane by plane (Y, Cb, Cr) in raster order; ``code(flags, context, flag)``
    codes one flag (see :func:`vqcodec.codec.granularity._walk`). Returns the values."""
    out = np.zeros_like(values)
    planes = [(AdaptiveFlags(3), AdaptiveFlags(3), AdaptiveFlags(4)) for _ in range(2)]  # luma, chroma
    for c in range(values.shape[0]):
        zero, sign, magnitude = planes[min(c, 1)]
        plane = out[c]
        for i in range(values.shape[1]):
            for j in range(values.shape[2]):
                left = plane[i, j - 1] if j else 0
                up = plane[i - 1, j] if i else 0
                v = int(values[c, i, j])
                if not code(zero, int(left != 0) + int(up != 0), v != 0):
                    continue
                negative = code(sign, 0 if left == 0 else 1 + int(left < 0), v < 0)
                m = 1
                while m < MAX_VALUE and code(magnitude, min(m, 4) - 1, abs(v) > m):
                    m += 1
                plane[i, j] = -m if negative else m
    return out


def encode_layer(layer: ToneLayer) -> bytes:
    """The layer → bytes: ``log2(block)``, the luma and chroma steps, then the coded values."""
    if layer.block not in BLOCKS or not all(1 <= s <= 255 for s in layer.steps):
        raise ValueError(f"tone block must be one of {BLOCKS} and steps in [1, 255], got {layer.block}, {layer.steps}")
    if np.abs(layer.values).max(initial=0) > MAX_VALUE:
        raise ValueError(f"tone values must lie in [-{MAX_VALUE}, {MAX_VALUE}]")
    writer = FlagWriter()
    _walk(layer.values, writer)
    return bytes([layer.block.bit_length() - 1, *layer.steps]) + writer.finish()


def decode_layer(data: bytes, width: int, height: int) -> ToneLayer:
    """Bytes → the layer of a ``width × height`` image. Raises :class:`BitstreamError` on bad data."""
    if len(data) < 4:
        raise BitstreamError("tone layer is truncated")
    block = 1 << data[0] if data[0] < 16 else 0
    steps = (data[1], data[2])
    if block not in BLOCKS or 0 in steps:
        raise BitstreamError(f"tone layer has an invalid block ({data[0]}) or step ({steps})")
    shape = (3, *grid_shape(width, height, block))
    try:
        values = _walk(np.zeros(shape, dtype=np.int64), FlagReader(data[3:]))
    except Exception as exc:  # constriction reports bad data with assorted built-in exceptions
        raise BitstreamError(f"tone layer is invalid: {exc}") from None
    return ToneLayer(block, steps, values)
