"""Tiled encoding and decoding: any image size with memory bounded by the tile, not the image.

The ``taef2`` networks are convolutional except for the GroupNorm layers of their middle blocks,
whose statistics span the whole image. Tiling alone would give every tile its own statistics and
so its own tone (the seams of diffusers' tiled VAE); here every tile instead normalises with the
whole image's statistics, gathered over the tiles in a first pass per GroupNorm layer (cheap: they
sit at 1/8 resolution). With a halo as wide as the receptive field, a tile then computes what the
whole-image pass computes, up to float rounding:

- encoding runs the full-resolution trunk (everything before the first GroupNorm) tile by tile
  into a 1/8-resolution feature map (64 channels, 4 bytes per image pixel), then the head over
  that map in tiles, keeping each tile's own indices;
- decoding runs the decoder per tile with a halo and blends neighbouring tiles with linear ramps
  over their overlap, into a preallocated output.

Tiles are visited in a fixed order and each is computed alone, so the result does not depend on
the thread count; the encoder's tile size is fixed (:data:`ENCODE_TILE`) so an image always gives
the same indices.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..models import VQGAN
from .image_io import as_float

ENCODE_TILE = 32  # tokens (512 pixels) per side: part of what an encoded file means, never change it
ENCODE_HALO = 4  # tokens of context around an encoder tile in its full-resolution trunk
ENCODE_HEAD_HALO = 8  # the same in its 1/8-resolution head (cheap, and wider-reaching)
DECODE_TILE = 32  # tokens per side of a decoded tile's core
DECODE_HALO = 4  # tokens decoded beyond each side of a tile, blended with the neighbours
WHOLE_TOKENS = 48 * 48  # grids of at most this many tokens (768×768 pixels) run whole: halos cost 15–20 %


@dataclass(frozen=True)
class Tiling:
    """Tile sizes and halos, in tokens. Grids of at most ``whole`` tokens take the whole-image path.

    ``whole`` and ``encode_tile`` decide the indices of larger images: keep the defaults for files
    others encode the same way. The decoder's tiles only move pixels within the seam tolerance.
    """

    whole: int = WHOLE_TOKENS
    encode_tile: int = ENCODE_TILE
    encode_halo: int = ENCODE_HALO
    encode_head_halo: int = ENCODE_HEAD_HALO
    decode_tile: int = DECODE_TILE
    decode_halo: int = DECODE_HALO

    def __post_init__(self) -> None:
        if min(self.encode_tile, self.decode_tile) < 1 or min(self.whole, self.encode_halo, self.encode_head_halo, self.decode_halo) < 0:
            raise ValueError("tiles need at least one token and halos cannot be negative")
        if self.decode_tile < 2 * self.decode_halo:
            raise ValueError("the decoder's tile must be at least twice its halo, so only neighbours overlap")


def spans(length: int, tile: int) -> list[tuple[int, int]]:
    """``[start, end)`` of consecutive tiles of ``tile`` covering ``range(length)``."""
    return [(start, min(length, start + tile)) for start in range(0, length, tile)]


def tiles(h: int, w: int, tile: int) -> Iterator[tuple[tuple[int, int], tuple[int, int]]]:
    """Row-major tiles ``((y0, y1), (x0, x1))`` of an ``h×w`` grid."""
    for rows in spans(h, tile):
        for cols in spans(w, tile):
            yield rows, cols


def progress_bar(total: int | None, desc: str, show: bool, unit: str = "tile") -> tqdm:
    """A transient progress bar on stderr when it is a terminal (large images take minutes on a CPU)."""
    return tqdm(total=total, desc=desc, unit=unit, disable=None if show else True, leave=False, file=sys.stderr,
                dynamic_ncols=True)


def grow(span: tuple[int, int], halo: int, length: int) -> tuple[int, int]:
    """``span`` widened by ``halo`` on both sides, clipped to ``[0, length)``."""
    return max(0, span[0] - halo), min(length, span[1] + halo)


class _Collected(Exception):
    """Raised by a collecting GroupNorm once it has its statistics: the rest of the pass is not needed."""


class GlobalGroupNorm:
    """Makes a network's GroupNorm layers use statistics of the whole image while it runs on tiles.

    Statistics are gathered layer by layer (:meth:`collect`): a layer's input depends on the layers
    before it, which must already be whole-image. Sums are kept in float64 over each tile's core only.
    """

    def __init__(self, net: nn.Module, halo: int) -> None:
        self.halo = halo  # tokens of context the tiled passes run each tile with
        self.layers = [m for m in net.modules() if isinstance(m, nn.GroupNorm)]
        self.stats: list[tuple[torch.Tensor, torch.Tensor]] = []  # (mean, 1/std) [B,G] per layer
        self._sums: torch.Tensor | None = None  # [3,B,G]: count, sum, sum of squares
        self._core: tuple[tuple[int, int], tuple[int, int], int, int] | None = None

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """While inside, the layers with statistics use them and the next one collects."""
        for i, layer in enumerate(self.layers):
            layer.forward = (lambda x, i=i, layer=layer: self._forward(i, layer, x))
        try:
            yield
        finally:
            for layer in self.layers:
                del layer.forward

    def collect(self, run: Callable[[tuple[int, int], tuple[int, int]], None], h: int, w: int, tile: int) -> None:
        """Gather every layer's statistics: ``run(rows, cols)`` runs the network on the tile whose
        core is ``rows × cols`` of the ``h×w`` token grid, with its halo, in :meth:`active`."""
        while len(self.stats) < len(self.layers):
            self._sums = None
            for rows, cols in tiles(h, w, tile):
                self._core = (rows, cols, h, w)
                with contextlib.suppress(_Collected):
                    run(rows, cols)
            count, total, squares = self._sums
            mean = total / count
            var = (squares / count - mean**2).clamp_min(0)
            eps = self.layers[len(self.stats)].eps
            self.stats.append((mean, (var + eps).rsqrt()))
        self._core = None

    def _forward(self, i: int, layer: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        groups = x.reshape(x.shape[0], layer.num_groups, -1, *x.shape[2:])
        if i == len(self.stats):
            self._accumulate(groups)
            raise _Collected
        mean, rstd = (s.to(x.dtype)[:, :, None, None, None] for s in self.stats[i])
        y = ((groups - mean) * rstd).view_as(x)
        return y * layer.weight[:, None, None] + layer.bias[:, None, None] if layer.affine else y

    def _accumulate(self, groups: torch.Tensor) -> None:
        """Add the tile's core to the sums; its place in the tile follows from the tile's extent."""
        (y0, y1), (x0, x1), h, w = self._core
        height, width = groups.shape[-2:]
        halo_rows, halo_cols = grow((y0, y1), self.halo, h), grow((x0, x1), self.halo, w)
        sy, sx = height // (halo_rows[1] - halo_rows[0]), width // (halo_cols[1] - halo_cols[0])
        core = groups[..., sy * (y0 - halo_rows[0]) : sy * (y1 - halo_rows[0]), sx * (x0 - halo_cols[0]) : sx * (x1 - halo_cols[0])]
        core = core.double().flatten(2)
        sums = torch.stack([torch.full_like(core[:, :, 0], core.shape[2]), core.sum(2), (core**2).sum(2)])
        self._sums = sums if self._sums is None else self._sums + sums


def _pad_to_grid(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Edge-pad a crop of the image at its bottom and right to ``height×width`` (the whole-image padding)."""
    return F.pad(x, (0, width - x.shape[-1], 0, height - x.shape[-2]), mode="replicate")


def _first_group_norm(seq: nn.Sequential) -> int:
    return next(i for i, m in enumerate(seq) if any(isinstance(s, nn.GroupNorm) for s in m.modules()))


def encode_features(
    model: VQGAN, images: torch.Tensor, tiling: Tiling, progress: bool = False
) -> Iterator[tuple[tuple[int, int], tuple[int, int], torch.Tensor]]:
    """Encoder output (before ``quant_conv``) of ``images [B,3,H,W]`` (float in [0,1], or uint8:
    converted a tile at a time, so no float copy of the whole image is made) tile by tile:
    ``(rows, cols, features [B,C,rows,cols])`` over the token grid, in row-major order."""
    f = model.config.downsampling
    height, width = images.shape[-2:]
    h, w = -(-height // f), -(-width // f)
    tile, halo, head_halo = tiling.encode_tile, tiling.encode_halo, tiling.encode_head_halo
    f8 = model.encoder.f8
    split = _first_group_norm(f8)
    trunk, head = f8[:split], f8[split:]

    def crop(rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
        (y0, y1), (x0, x1) = grow(rows, halo, h), grow(cols, halo, w)
        part = images[..., y0 * f : min(height, y1 * f), x0 * f : min(width, x1 * f)]
        return _pad_to_grid(as_float(part), (y1 - y0) * f, (x1 - x0) * f)

    cache: torch.Tensor | None = None  # trunk output of the whole image, s values per token
    bar = progress_bar(2 * len(spans(h, tile)) * len(spans(w, tile)), "encoding", progress)
    for rows, cols in tiles(h, w, tile):
        bar.update()
        out = trunk(crop(rows, cols))
        (y0, _), (x0, x1) = grow(rows, halo, h), grow(cols, halo, w)
        s = out.shape[-1] // (x1 - x0)
        if cache is None:
            cache = out.new_empty(out.shape[0], out.shape[1], s * h, s * w)
        cache[..., s * rows[0] : s * rows[1], s * cols[0] : s * cols[1]] = out[
            ..., s * (rows[0] - y0) : s * (rows[1] - y0), s * (cols[0] - x0) : s * (cols[1] - x0)
        ]

    def run_head(rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
        (y0, y1), (x0, x1) = grow(rows, head_halo, h), grow(cols, head_halo, w)
        out = model.encoder.to_f16(head(cache[..., s * y0 : s * y1, s * x0 : s * x1]))
        return out[..., rows[0] - y0 : rows[1] - y0, cols[0] - x0 : cols[1] - x0]

    norms = GlobalGroupNorm(head, head_halo)
    with norms.active():
        norms.collect(run_head, h, w, tile)
        for rows, cols in tiles(h, w, tile):
            bar.update()
            yield rows, cols, run_head(rows, cols)
    bar.close()


def _ramp(start: int, end: int, halo: int, total: int) -> torch.Tensor:
    """Weights along one axis of a tile covering ``[start-halo, end+halo)`` (clipped to ``[0,total)``):
    1 in the core, linear over the ``2·halo`` overlap with each neighbour; neighbours' ramps sum to 1."""
    lo, hi = max(0, start - halo), min(total, end + halo)
    x = torch.arange(lo, hi, dtype=torch.float32) + 0.5
    weight = torch.ones(hi - lo)
    if start > 0 and halo:
        weight = weight * ((x - (start - halo)) / (2 * halo)).clamp(0, 1)
    if end < total and halo:
        weight = weight * (((end + halo) - x) / (2 * halo)).clamp(0, 1)
    return weight


Sink = Callable[[int, torch.Tensor], None]  #: receives finished output rows: (first pixel row, ``[B,3,n,W]``)


def decode(model: VQGAN, indices: torch.Tensor, level: int, tiling: Tiling, progress: bool = False,
           sink: Sink | None = None) -> torch.Tensor | None:
    """Indices ``[B,h,w]`` → images ``[B,3,f·h,f·w]`` in [0,1], decoded tile by tile with blended halos.

    Tiles go row by row; once a row of tiles is done, the pixel rows no later tile reaches are
    final. With ``sink`` they are handed to it (in order, a whole number of tokens high, as a view
    to copy from) and only a band of about one tile row is kept, so the caller decides what a
    full-size image costs (8-bit, or nothing); without it they fill the returned float32 image.
    """
    f = model.config.downsampling
    b, h, w = indices.shape
    tile, halo = tiling.decode_tile, tiling.decode_halo
    net = model.level_model(level)
    out = None
    if sink is None:
        out = torch.empty(b, 3, f * h, f * w, dtype=torch.float32)

        def sink(top: int, rows: torch.Tensor) -> None:
            out[..., top : top + rows.shape[-2], :] = rows

    def run(rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
        (y0, y1), (x0, x1) = grow(rows, halo, h), grow(cols, halo, w)
        return net.decode_latent(model.indices_to_codes(indices[:, y0:y1, x0:x1], level))

    norms = GlobalGroupNorm(net.decoder, halo)
    band, top = torch.zeros(b, 3, 0, f * w), 0  # output rows [top, top + band height) still being blended
    with norms.active():
        norms.collect(run, h, w, tile)
        bar = progress_bar(len(spans(h, tile)) * len(spans(w, tile)), "decoding", progress)
        for rows in spans(h, tile):
            y0, y1 = grow(rows, halo, h)
            band = torch.cat([band, band.new_zeros(b, 3, f * y1 - top - band.shape[-2], f * w)], dim=-2)
            for cols in spans(w, tile):
                bar.update()
                part = run(rows, cols)
                x0, x1 = grow(cols, halo, w)
                wy = _ramp(f * rows[0], f * rows[1], f * halo, f * h)
                wx = _ramp(f * cols[0], f * cols[1], f * halo, f * w)
                band[..., f * y0 - top : f * y1 - top, f * x0 : f * x1] += part.float().cpu() * (wy[:, None] * wx[None, :])
            done = f * h if rows[1] == h else f * (rows[1] - halo)
            sink(top, band[..., : done - top, :])
            band, top = band[..., done - top :, :].clone(), done
    bar.close()
    return out
