"""The context entropy model (id 2): integer inference that every machine computes identically.

The grid is coded in :data:`N_STAGES` stages fixed by each position's phase ``(row mod 4, col mod
4)`` (:data:`STAGE_OF_PHASE`): 1/16 of the positions, then 1/16, 2/16, 4/16 and the last 8/16
(a checkerboard), each stage seeing all earlier ones. A stage's codes are range-coded with
distributions a small convolutional net computes from the codes of the earlier stages.

Why it is exact on any machine: the net's weights, activations, accumulators and scores are
integers, and every intermediate value is bounded well below 2**53 (checked when the tables are
loaded). Products and sums of such integers are exact in IEEE float64, so the results do not depend
on summation order, blocking, FMA, thread count, BLAS kernel or device: only multiply, add, floor
and table look-ups are used (convolutions are written as matrix products, never FFT/Winograd).
Probabilities come from an integer table of exp (built with :mod:`decimal`, correctly rounded), and
constriction turns the integer frequencies into its fixed-point model the same way everywhere.

This module knows nothing of networks: it computes with the integer tables that
:meth:`vqcodec.models.context.ContextModel.export` writes, and it knows nothing of files.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, localcontext

import constriction
import numpy as np
import torch

from .coder import decoder_for, finish

STAGE_OF_PHASE = np.array([[0, 4, 2, 4], [4, 3, 4, 3], [2, 4, 1, 4], [4, 3, 4, 3]])
N_STAGES = 5
UNIT = 1 / 32  # the input embedding's grid step (training only)
EMBED_MAX = WEIGHT_MAX = ACT_MAX = 127
KNOWN_INPUT = 32  # the known-flag channel at a coded position
SHIFT = 24  # requantization multipliers are fixed-point with this many fraction bits
SCORE_PER_NAT = 16  # scores are integers in 1/16 nat
PROB_BITS = 16
EXACT_LIMIT = 2**52  # every intermediate stays below this: exact in float64
CHUNK = 1 << 22  # probabilities computed at once (positions × codes), bounding memory


def _exp_table() -> np.ndarray:
    """``max(1, round(2**PROB_BITS · exp(−i / SCORE_PER_NAT)))`` down to 1, computed in decimal
    arithmetic so that no platform's libm can change an entry."""
    out = []
    with localcontext() as ctx:
        ctx.prec = 40
        while not out or out[-1] > 1:
            v = (Decimal(-len(out)) / SCORE_PER_NAT).exp() * (1 << PROB_BITS)
            out.append(max(1, int(v.to_integral_value())))
    return np.array(out, dtype=np.int64)


EXP = _exp_table()


def stage_map(height: int, width: int) -> np.ndarray:
    """The stage (0 … N_STAGES−1) of every grid position ``[height, width]``."""
    return STAGE_OF_PHASE[np.arange(height)[:, None] % 4, np.arange(width)[None, :] % 4]


@dataclass(frozen=True)
class _Layer:
    weight: torch.Tensor  # float64 [out, in, 3, 3], integer values
    bias: torch.Tensor  # float64 [out]
    mult: torch.Tensor  # float64 [out]
    dilation: int


@dataclass(frozen=True)
class _Level:
    embed: torch.Tensor  # float64 [S, E]
    out: torch.Tensor  # float64 [S, C]
    mult: float
    bias: torch.Tensor  # int64 [S]


class ContextTables:
    """A context model's integer tables, checked for the bounds that make float64 exact."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = {k: np.ascontiguousarray(v, dtype=np.int32) for k, v in arrays.items()}
        self.fingerprint = self._fingerprint(self.arrays)
        try:
            self.layers = self._layers()
            self.levels = self._levels()
        except (KeyError, ValueError, IndexError) as exc:
            raise ValueError(f"invalid context model tables: {exc}") from None

    @staticmethod
    def _fingerprint(arrays: dict[str, np.ndarray]) -> bytes:
        h = hashlib.sha256()
        for name in sorted(arrays):
            a = arrays[name]
            h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
            h.update(a.tobytes())
        return h.digest()[:8]

    def _layers(self) -> list[_Layer]:
        layers, channels, i = [], None, 0
        while f"conv.{i}.weight" in self.arrays:
            w = self.arrays[f"conv.{i}.weight"]
            b, m = self.arrays[f"conv.{i}.bias"], self.arrays[f"conv.{i}.mult"]
            (d,) = self.arrays[f"conv.{i}.dilation"]
            if w.ndim != 4 or w.shape[2:] != (3, 3) or b.shape != m.shape != (w.shape[0],) or not 1 <= d <= 8:
                raise ValueError(f"conv.{i} has a bad shape")
            if channels is not None and w.shape[1] != channels:
                raise ValueError(f"conv.{i} expects {w.shape[1]} channels, gets {channels}")
            limit = ACT_MAX if i else max(EMBED_MAX, KNOWN_INPUT)
            acc = int(np.abs(w).astype(np.int64).sum(axis=(1, 2, 3)).max()) * limit + int(np.abs(b).max())
            if np.abs(w).max() > WEIGHT_MAX or (m < 0).any() or acc * int(m.max()) + (1 << SHIFT) >= EXACT_LIMIT:
                raise ValueError(f"conv.{i} exceeds the exact-arithmetic bounds")
            layers.append(_Layer(*(torch.from_numpy(a.astype(np.float64)) for a in (w, b, m)), int(d)))
            channels, i = w.shape[0], i + 1
        if not layers:
            raise ValueError("no layers")
        self.width = channels
        self.embed = layers[0].weight.shape[1] - 1
        return layers

    def _levels(self) -> dict[int, _Level]:
        levels = {}
        for key in self.arrays:
            if not (key.startswith("level.") and key.endswith(".embed")):
                continue
            size = int(key.split(".")[1])
            e, o = self.arrays[f"level.{size}.embed"], self.arrays[f"level.{size}.out"]
            (m,) = self.arrays[f"level.{size}.mult"]
            b = self.arrays[f"level.{size}.bias"]
            if e.shape != (size, self.embed) or o.shape != (size, self.width) or b.shape != (size,):
                raise ValueError(f"level {size} has a bad shape")
            score = ACT_MAX * int(np.abs(o).astype(np.int64).sum(1).max())
            if np.abs(e).max() > EMBED_MAX or np.abs(o).max() > WEIGHT_MAX or m < 0 or score * int(m) >= EXACT_LIMIT:
                raise ValueError(f"level {size} exceeds the exact-arithmetic bounds")
            levels[size] = _Level(torch.from_numpy(e.astype(np.float64)), torch.from_numpy(o.astype(np.float64)),
                                  float(m), torch.from_numpy(b.astype(np.int64)))
        return levels

    def to(self, device: str | torch.device) -> ContextTables:
        """The same tables computing on ``device`` (the results are identical: see the module doc)."""
        moved = copy.copy(self)
        moved.layers = [dataclasses.replace(layer, weight=layer.weight.to(device), bias=layer.bias.to(device),
                                            mult=layer.mult.to(device)) for layer in self.layers]
        moved.levels = {size: dataclasses.replace(lv, embed=lv.embed.to(device), out=lv.out.to(device),
                                                  bias=lv.bias.to(device)) for size, lv in self.levels.items()}
        return moved

    # -- the integer network ---------------------------------------------------------------------
    def features(self, indices: torch.Tensor, known: torch.Tensor, level: int) -> torch.Tensor:
        """Integer features ``float64 [B, width, h, w]`` from ``indices`` and ``known`` ``[B, h, w]``."""
        emb = self.levels[level].embed[indices] * known[..., None]
        x = torch.cat([emb, known[..., None].double() * KNOWN_INPUT], -1).permute(0, 3, 1, 2)
        for layer in self.layers:
            x = _conv3x3(x, layer.weight, layer.dilation) + layer.bias[:, None, None]
            x = torch.floor((x * layer.mult[:, None, None] + (1 << (SHIFT - 1))) / (1 << SHIFT)).clamp_(0, ACT_MAX)
        return x

    def frequencies(self, features: torch.Tensor, level: int) -> np.ndarray:
        """Integer frequencies ``int64 [N, S]`` (all ≥ 1) of the codes at ``features [N, width]``."""
        lv = self.levels[level]
        score = torch.floor((features @ lv.out.t() * lv.mult + (1 << (SHIFT - 1))) / (1 << SHIFT)).long() + lv.bias
        gap = (score.amax(1, keepdim=True) - score).clamp_(max=len(EXP) - 1)
        return EXP[gap.cpu().numpy()]


def _conv3x3(x: torch.Tensor, weight: torch.Tensor, dilation: int) -> torch.Tensor:
    """Zero-padded 3×3 convolution as nine matrix products (exact on integers, any kernel)."""
    b, _, h, w = x.shape
    d = dilation
    padded = torch.nn.functional.pad(x, (d, d, d, d))
    out = x.new_zeros(b, weight.shape[0], h, w)
    for ky in range(3):
        for kx in range(3):
            tap = padded[:, :, ky * d : ky * d + h, kx * d : kx * d + w]
            out += torch.einsum("oc,bchw->bohw", weight[:, :, ky, kx], tap)
    return out


_FAMILY = constriction.stream.model.Categorical(perfect=False)


def _positions(parts: np.ndarray, members: list[int]) -> torch.Tensor:
    """Bool ``[len(members), h, w]``: where each of ``members`` has its positions."""
    return torch.from_numpy(np.stack([parts == k for k in members]))


def coded_positions(anchor: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Bool ``[h,w]``: the positions that carry a symbol (those that are their own anchor)."""
    if anchor is None:
        return np.ones(shape, dtype=bool)
    return anchor == np.arange(anchor.size).reshape(shape)


def spread(grid: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """Every position takes its anchor's value (a coarse token over its square)."""
    return np.asarray(grid).reshape(-1)[anchor.reshape(-1)].reshape(anchor.shape)


def _probabilities(freq: np.ndarray) -> np.ndarray:
    return freq / freq.sum(1, keepdims=True).astype(np.float64)


class ContextCoder:
    """Codes the index grid of one level with a context model, as independent parts.

    A part (the whole grid of a plain file, one packet of a packetized one) is coded from its own
    positions only, so every part decodes alone. Parts are computed together in batches.
    """

    def __init__(self, tables: ContextTables, level: int) -> None:
        if level not in tables.levels:
            raise ValueError(f"the context model has no level {level}")
        self.tables = tables
        self.level = level

    def _stage_frequencies(
        self, grid: torch.Tensor, own: torch.Tensor, members: list[int], stage: int, stages: np.ndarray, coded: np.ndarray
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """For each part in ``members`` (whose positions are ``own [len(members), h, w]``): its
        coded positions of ``stage`` (flat, row-major) and their frequencies, computed from the
        part's positions of earlier stages in ``grid``, a chunk at a time so memory stays bounded."""
        known = own & torch.from_numpy(stages < stage)
        feats = self.tables.features(grid.expand(len(members), -1, -1), known, self.level)
        feats = feats.flatten(2)
        target = own & torch.from_numpy((stages == stage) & coded)
        step = max(1, CHUNK // len(self.tables.levels[self.level].bias))
        for j, k in enumerate(members):
            where = np.flatnonzero(target[j].numpy())
            for a in range(0, len(where), step):
                chunk = where[a : a + step]
                yield k, chunk, self.tables.frequencies(feats[j][:, torch.from_numpy(chunk)].t(), self.level)

    def _batches(self, count: int, shape: tuple[int, int]) -> list[list[int]]:
        per = max(1, CHUNK // (self.tables.width * shape[0] * shape[1]))
        return [list(range(a, min(count, a + per))) for a in range(0, count, per)]

    def encode(self, grid: np.ndarray, parts: np.ndarray, count: int, anchor: np.ndarray | None = None) -> list[bytes]:
        """Payloads of the ``count`` parts; ``parts [h,w]`` gives each position's part number.
        ``anchor`` (see :mod:`vqcodec.codec.granularity`): only positions that are their own
        anchor are coded; the others copy theirs, which always comes in an earlier stage."""
        stages = stage_map(*grid.shape)
        coded = coded_positions(anchor, grid.shape)
        encoders = [constriction.stream.queue.RangeEncoder() for _ in range(count)]
        g = torch.from_numpy(np.asarray(grid, dtype=np.int64))[None]
        flat = np.asarray(grid, dtype=np.int32).reshape(-1)
        for members in self._batches(count, grid.shape):
            own = _positions(parts, members)
            for stage in range(N_STAGES):
                for k, where, freq in self._stage_frequencies(g, own, members, stage, stages, coded):
                    encoders[k].encode(np.ascontiguousarray(flat[where]), _FAMILY, _probabilities(freq))
        return [finish(e) for e in encoders]

    def decode(
        self, payloads: list[bytes | None], parts: np.ndarray, anchor: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[bool]]:
        """``(grid int64 [h,w], decoded?)`` from each part's payload (None: missing). Positions of a
        missing or undecodable part are 0 in the grid. ``anchor``: as in :meth:`encode`."""
        shape = parts.shape
        stages = stage_map(*shape)
        coded = coded_positions(anchor, shape)
        grid = torch.zeros((1, *shape), dtype=torch.int64)
        ok = [p is not None for p in payloads]
        decoders = {}
        for k, p in enumerate(payloads):
            if p is None:
                continue
            try:
                decoders[k] = decoder_for(p)
            except Exception:  # as in decode below: any constriction complaint means an undecodable part
                ok[k] = False
        for members in self._batches(len(payloads), shape):
            for stage in range(N_STAGES):
                members = [k for k in members if ok[k]]
                if not members:
                    break
                for k, where, freq in self._stage_frequencies(grid, _positions(parts, members), members, stage, stages, coded):
                    if not ok[k]:
                        continue
                    try:
                        symbols = decoders[k].decode(_FAMILY, _probabilities(freq))
                    except Exception:  # constriction reports bad data with assorted built-in exceptions
                        ok[k] = False
                        grid[0][torch.from_numpy(parts == k)] = 0
                        continue
                    grid.view(-1)[torch.from_numpy(where)] = torch.from_numpy(np.asarray(symbols, dtype=np.int64))
                if anchor is not None:
                    grid[0] = torch.from_numpy(spread(grid[0].numpy(), anchor))
        return grid[0].numpy(), ok
