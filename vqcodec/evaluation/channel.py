"""Simulated transmission loss, for experiments: drop packets or single indices reproducibly."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..codec import container
from ..codec.codec import Codec, DecodedImage
from ..codec.container import Stream
from ..errors import VQCodecError

LOSS_UNITS = ("packet", "index")


def _check(fraction: float, unit: str) -> None:
    if not 0.0 <= fraction <= 1.0:
        raise VQCodecError(f"loss fraction must be in [0, 1], got {fraction}")
    if unit not in LOSS_UNITS:
        raise VQCodecError(f"loss unit must be one of {LOSS_UNITS}, got {unit!r}")


def dropped_packets(packets: int, fraction: float, seed: int) -> np.ndarray:
    """The ``round(fraction·K)`` of ``K`` packets a seeded channel loses: one rule for files and grids."""
    return np.random.default_rng(seed).permutation(packets)[: round(fraction * packets)]


def simulate_loss(stream: Stream, fraction: float, unit: str, seed: int) -> Stream:
    """The stream minus the packets :func:`dropped_packets` chooses (unit "packet")."""
    _check(fraction, unit)
    if unit != "packet":
        return stream
    if not stream.header.packetized:
        raise VQCodecError("packet loss needs a packetized file; index loss works on any file")
    dropped = set(dropped_packets(stream.header.packets, fraction, seed).tolist())
    survivors = {k: v for k, v in stream.packets.items() if k not in dropped}
    return dataclasses.replace(stream, packets=survivors)


def packet_loss_mask(shape: tuple[int, int], packets: int, fraction: float, seed: int) -> torch.Tensor:
    """Known-mask ``[h,w]`` of a grid sent as ``packets`` interleaved packets
    (:func:`~vqcodec.codec.container.packet_assignment`) after :func:`simulate_loss` with the same
    ``fraction`` and ``seed``: which indices are lost, without encoding a file."""
    _check(fraction, "packet")
    layout = container.packet_assignment(shape[0], shape[1], packets)
    return torch.from_numpy(~np.isin(layout, dropped_packets(packets, fraction, seed)))


def index_loss_mask(shape: tuple[int, int], fraction: float, seed: int) -> torch.Tensor:
    """Known-mask ``[h,w]`` with ``round(fraction·h·w)`` random positions lost."""
    _check(fraction, "index")
    n = shape[0] * shape[1]
    lost = np.random.default_rng(seed).permutation(n)[: round(fraction * n)]
    known = np.ones(n, dtype=bool)
    known[lost] = False
    return torch.from_numpy(known.reshape(shape))


def decode_with_loss(
    codec: Codec, data: bytes | Stream, fraction: float, unit: str = "packet", seed: int = 0, **options
) -> DecodedImage:
    """Decode ``data`` (bytes or a parsed stream) as if ``fraction`` of its packets (or indices) had been lost on the way;
    ``options`` go to :meth:`Codec.decode_with_report` (restoration method and steps)."""
    _check(fraction, unit)
    stream = data if isinstance(data, Stream) else container.read(data, codec.max_pixels)
    if unit == "packet":
        return codec.decode_with_report(simulate_loss(stream, fraction, unit, seed), **options)
    shape = (stream.header.grid_height, stream.header.grid_width)
    return codec.decode_with_report(stream, lost=~index_loss_mask(shape, fraction, seed), **options)
