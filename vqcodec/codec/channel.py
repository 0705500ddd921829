"""Simulated transmission loss, for experiments: drop packets or single indices reproducibly."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..errors import VQCodecError
from .container import Stream

LOSS_UNITS = ("packet", "index")


def _check(fraction: float, unit: str) -> None:
    if not 0.0 <= fraction <= 1.0:
        raise VQCodecError(f"loss fraction must be in [0, 1], got {fraction}")
    if unit not in LOSS_UNITS:
        raise VQCodecError(f"loss unit must be one of {LOSS_UNITS}, got {unit!r}")


def simulate_loss(stream: Stream, fraction: float, unit: str, seed: int) -> Stream:
    """The stream minus ``round(fraction·K)`` randomly chosen packets (unit "packet")."""
    _check(fraction, unit)
    if unit != "packet":
        return stream
    if not stream.header.packetized:
        raise VQCodecError("packet loss needs a packetized file (encode with --packets); or use --loss-unit index")
    count = stream.header.packets
    dropped = set(np.random.default_rng(seed).permutation(count)[: round(fraction * count)].tolist())
    survivors = {k: v for k, v in stream.packets.items() if k not in dropped}
    return dataclasses.replace(stream, packets=survivors)


def index_loss_mask(shape: tuple[int, int], fraction: float, seed: int) -> torch.Tensor:
    """Known-mask ``[h,w]`` with ``round(fraction·h·w)`` random positions lost."""
    _check(fraction, "index")
    n = shape[0] * shape[1]
    lost = np.random.default_rng(seed).permutation(n)[: round(fraction * n)]
    known = np.ones(n, dtype=bool)
    known[lost] = False
    return torch.from_numpy(known.reshape(shape))
