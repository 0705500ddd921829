"""Index grids ↔ container files: one range-coded payload, or interleaved packets that decode alone.

Indices travel as ``int64`` numpy grids ``[h, w]`` between the model runner and this module. A
header with a granularity map (:mod:`.granularity`) codes only its tokens' anchors; every other
position copies its anchor and travels in the anchor's packet.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ..entropy import EntropyModel
from ..errors import BitstreamError, VQCodecError
from . import container, granularity


def write(
    header: container.Header,
    indices: np.ndarray,
    entropy: EntropyModel,
    packets: int | None = None,
    packet_bytes: int | None = None,
) -> tuple[container.Header, bytes]:
    """``(header as written, file bytes)``: a plain file, or a packetized one when ``packets`` (a
    count) or ``packet_bytes`` (the largest payload a packet may carry) is given."""
    if packets is not None and packet_bytes is not None:
        raise VQCodecError("give packets or packet_bytes, not both")
    anchor = anchors(header)
    if packets is None and packet_bytes is None:
        return header, container.pack(header, entropy.encode(indices, anchor=anchor)[0])
    count, payloads = _packetize(header, indices, entropy, packets, packet_bytes, anchor)
    header = dataclasses.replace(header, flags=container.FLAG_PACKETIZED, packets=count)
    return header, container.pack_packets(header, payloads)


def anchors(header: container.Header) -> np.ndarray | None:
    """Each grid position's anchor under the header's granularity map; None without a map."""
    if not header.granularity_map:
        return None
    shape = (header.grid_height, header.grid_width)
    return granularity.anchors(granularity.decode_map(header.granularity_map, *shape), *shape)


def _parts(header: container.Header, packets: int, anchor: np.ndarray | None) -> np.ndarray:
    """Each position's packet: its anchor's, so a token and its copies travel together."""
    assignment = container.packet_assignment(header.grid_height, header.grid_width, packets)
    return assignment if anchor is None else assignment.reshape(-1)[anchor]


def _packetize(
    header: container.Header, indices: np.ndarray, entropy: EntropyModel, packets: int | None, packet_bytes: int | None,
    anchor: np.ndarray | None,
) -> tuple[int, list[bytes]]:
    """The fewest packets (from ``packets``, or from a first guess for ``packet_bytes``) whose payloads fit."""
    limit = min(container.MAX_PACKETS, indices.size)
    if packets is None:
        if packet_bytes < 1:
            raise VQCodecError("packet_bytes must be at least 1")
        packets = -(-len(entropy.encode(indices, anchor=anchor)[0]) // packet_bytes)  # a first guess, then grow
    if not 1 <= packets <= limit:
        raise VQCodecError(f"packets must be between 1 and {limit} for this {header.grid_width}x{header.grid_height} grid")
    budget = packet_bytes or container.MAX_PACKET_PAYLOAD
    while True:
        payloads = entropy.encode(indices, _parts(header, packets, anchor), packets, anchor)
        largest = max(len(p) for p in payloads)
        if largest <= budget or packets == limit:
            break
        packets += 1
    if largest > container.MAX_PACKET_PAYLOAD:
        raise VQCodecError(f"a packet would hold {largest} bytes, more than {container.MAX_PACKET_PAYLOAD}: use more packets")
    return packets, payloads


@dataclass
class Grid:
    """The indices a file delivered: ``known`` is False where a packet was lost or undecodable."""

    indices: np.ndarray  # int64 [h, w]; 0 where unknown
    known: np.ndarray  # bool [h, w]
    packets_lost: list[int] = field(default_factory=list)
    anchor: np.ndarray | None = None  # each position's anchor in a mixed-granularity grid


def read(stream: container.Stream, entropy: EntropyModel) -> Grid:
    """Decode a parsed file's payload (plain) or whichever packets arrived (packetized)."""
    header = stream.header
    shape = (header.grid_height, header.grid_width)
    anchor = anchors(header)
    if not header.packetized:
        indices, (ok,) = entropy.decode([stream.payload], np.zeros(shape, dtype=np.int64), anchor)
        if not ok:
            raise BitstreamError("entropy-coded payload is invalid")
        return Grid(indices, np.ones(shape, dtype=bool), anchor=anchor)
    assignment = _parts(header, header.packets, anchor)
    # missing, or CRC-valid but undecodable: lost either way
    indices, ok = entropy.decode([stream.packets.get(k) for k in range(header.packets)], assignment, anchor)
    lost = [k for k in range(header.packets) if not ok[k]]
    return Grid(indices, ~np.isin(assignment, lost), lost, anchor)
