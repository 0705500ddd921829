"""The ``.vqc`` container, format versions 1 to 5. The spec is ``docs/bitstream.md``; keep both in sync.

A writer stamps the lowest version that can express the file: version 1 unless the header carries
extensions (version 2: a coded size; version 3: a context model; version 4: a granularity map or
a coded size larger than the image; version 5: a tone layer), so files without them stay byte-identical to version 1.

All integers are little-endian. A plain file (flags 0)::

    offset size field
    0      4    magic  b"\\x89VQC"
    4      1    format version (1)
    5      1    flags (bit 0: packetized)
    6      1    model id length N (1..64)
    7      N    model id, UTF-8
    7+N    8    weights fingerprint (first 8 bytes of SHA-256 over the model's tensors)
    +8     4    level: codebook size S (u32)
    +4     4    image width  (u32, ≥1)
    +4     4    image height (u32, ≥1)
    +4     2    grid width  w (u16)  = ceil(width / f)
    +2     2    grid height h (u16)  = ceil(height / f)
    +2     1    downsampling factor f (u8, 16)
    +1     1    entropy-model id (u8: 0 uniform, 1 static prior of the level, 2 context model)
    +1     4    payload length P (u32)
    (v2)   2    extension bytes E, then E bytes of records: type (u8), length (u16), value
    +E     P    payload: range-coded indices, row-major
    +P     4    CRC-32 of every byte before it

Extension records (version 2): type 1, coded size (u32 width, u32 height): the grid covers the
image resized to this size, and the decoder resizes back (Lanczos) to width × height. Version 3
adds type 2, the 8-byte fingerprint of the context model that coded the payload (entropy id 2).
Version 4 adds type 3, the range-coded granularity map (:mod:`.granularity`): only the anchors of
its tokens are in the payload. From version 4 the coded size may exceed the image, up to
:data:`MAX_UPSCALE` times per side. Version 5 adds type 4, the tone layer (:mod:`.tone`): a coarse
correction of the decode's low frequencies, added after resizing to width × height.

A packetized file (flags bit 0) has the same fields up to the entropy-model id, then the packet
count K (u16), the extensions (version 2) and a CRC-32 of the header, then K packets that each decode on their own::

    2  sync b"\\xa5\\x5a" · 2  packet number k (u16) · 2  payload length (u16)
    L  payload: range-coded indices of the grid positions (r, c) with (r·A + c) mod K = k, row-major
    4  CRC-32 of the packet's bytes, started from the header CRC (ties the packet to its file)

A = max(1, round(0.382·K)), so no two 4-neighbours share a packet when K ≥ 3: a lost packet
removes scattered indices that the restorer can infer from their surviving neighbours.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from ..errors import BitstreamError, UnsupportedVersionError, VQCodecError

MAGIC = b"\x89VQC"
VERSION = 5  # the newest version this reader understands
MAX_MODEL_ID = 64
FLAG_PACKETIZED = 0x01
KNOWN_FLAGS = FLAG_PACKETIZED
MAX_PACKETS = 4096
MAX_GRID_SIDE = 0xFFFF  # u16 grid fields
MAX_PACKET_PAYLOAD = 0xFFFF
PACKET_SYNC = b"\xa5\x5a"
FIXED = struct.Struct("<8sIIIHHBBI")
FIXED_PACKETIZED = struct.Struct("<8sIIIHHBBH")  # … entropy id, packet count K
PACKET_HEAD = struct.Struct("<2sHH")
PACKET_OVERHEAD = PACKET_HEAD.size + 4
EXTENSIONS = struct.Struct("<H")  # byte length of the extension records (version 2)
RECORD = struct.Struct("<BH")  # record type, value length
MAX_EXTENSION_BYTES = 0xFFFF
EXT_CODED_SIZE = 1
CODED_SIZE = struct.Struct("<II")
EXT_CONTEXT_MODEL = 2  # version 3
CONTEXT_ENTROPY_ID = 2  # the entropy-model id whose header carries a context-model record
FINGERPRINT_BYTES = 8
EXT_GRANULARITY = 3  # version 4
MAX_UPSCALE = 2  # version 4: the coded size may be up to this many times the image's, per side
EXT_TONE = 4  # version 5


@dataclass(frozen=True)
class Header:
    """Everything needed to decode a payload, besides the model itself."""

    model_id: str
    fingerprint: bytes
    level: int
    width: int
    height: int
    grid_width: int
    grid_height: int
    factor: int
    entropy_model: int
    flags: int = 0
    packets: int = 0  # K for packetized files, 0 otherwise
    coded_width: int = 0  # size the grid covers when the image was resized before coding; 0: not resized
    coded_height: int = 0
    context_fingerprint: bytes = b""  # the context model's, for entropy id 2; empty otherwise
    granularity_map: bytes = b""  # the range-coded map of a mixed-granularity grid; empty: every token f16
    tone: bytes = b""  # the coded tone layer (:mod:`.tone`); empty: none

    @property
    def packetized(self) -> bool:
        return bool(self.flags & FLAG_PACKETIZED)

    @property
    def resized(self) -> bool:
        return bool(self.coded_width or self.coded_height)

    @property
    def coded_size(self) -> tuple[int, int]:
        """(width, height) of the image the grid covers."""
        return (self.coded_width, self.coded_height) if self.resized else (self.width, self.height)

    @property
    def upscaled(self) -> bool:
        return self.coded_width > self.width or self.coded_height > self.height

    @property
    def version(self) -> int:
        """The lowest format version that can express this header."""
        if self.tone:
            return 5
        if self.granularity_map or self.upscaled:
            return 4
        return 3 if self.context_fingerprint else 2 if self.resized else 1

    @property
    def padding(self) -> tuple[int, int]:
        """Pixels added on the right and bottom of the coded image to reach a multiple of the factor."""
        width, height = self.coded_size
        return self.grid_width * self.factor - width, self.grid_height * self.factor - height

    def validate(self, max_pixels: int | None = None) -> None:
        if self.width < 1 or self.height < 1:
            raise BitstreamError(f"invalid image size {self.width}x{self.height}")
        if self.factor < 1:
            raise BitstreamError("invalid downsampling factor 0")
        coded_w, coded_h = self.coded_size
        if self.resized and not (
            1 <= coded_w <= MAX_UPSCALE * self.width and 1 <= coded_h <= MAX_UPSCALE * self.height
        ):
            raise BitstreamError(f"invalid coded size {coded_w}x{coded_h} for a {self.width}x{self.height} image")
        if self.grid_width != -(-coded_w // self.factor) or self.grid_height != -(-coded_h // self.factor):
            raise BitstreamError("header grid size does not match the image size")
        if self.level < 1:
            raise BitstreamError("invalid level 0")
        if (self.entropy_model == CONTEXT_ENTROPY_ID) != bool(self.context_fingerprint):
            raise BitstreamError("corrupted header: the context model record and entropy model id disagree")
        if self.packetized and not 1 <= self.packets <= min(MAX_PACKETS, self.grid_width * self.grid_height):
            raise BitstreamError(f"invalid packet count {self.packets} for a {self.grid_width}x{self.grid_height} grid")
        padded = self.grid_width * self.grid_height * self.factor**2
        if max_pixels is not None and max(padded, self.width * self.height) > max_pixels:
            raise BitstreamError(
                f"header claims {self.width}x{self.height} pixels ({padded} once padded to the {self.factor}-pixel grid), "
                f"more than the limit of {max_pixels} (raise the pixel limit if you trust this file)"
            )


def _header_bytes(header: Header, last_field: int) -> bytes:
    model_id = header.model_id.encode("utf-8")
    if not 1 <= len(model_id) <= MAX_MODEL_ID:
        raise ValueError(f"model id must be 1..{MAX_MODEL_ID} bytes of UTF-8")
    if len(header.fingerprint) != 8:
        raise ValueError("fingerprint must be 8 bytes")
    fixed = FIXED_PACKETIZED if header.packetized else FIXED
    head = (
        MAGIC
        + bytes([header.version, header.flags, len(model_id)])
        + model_id
        + fixed.pack(
            header.fingerprint, header.level, header.width, header.height, header.grid_width,
            header.grid_height, header.factor, header.entropy_model, last_field,
        )
    )
    if header.version == 1:
        return head
    records = b""
    if header.resized:
        records += RECORD.pack(EXT_CODED_SIZE, CODED_SIZE.size) + CODED_SIZE.pack(header.coded_width, header.coded_height)
    if header.context_fingerprint:
        if len(header.context_fingerprint) != FINGERPRINT_BYTES:
            raise ValueError("context fingerprint must be 8 bytes")
        records += RECORD.pack(EXT_CONTEXT_MODEL, FINGERPRINT_BYTES) + header.context_fingerprint
    if header.granularity_map:
        records += RECORD.pack(EXT_GRANULARITY, len(header.granularity_map)) + header.granularity_map
    if header.tone:
        records += RECORD.pack(EXT_TONE, len(header.tone)) + header.tone
    if len(records) > MAX_EXTENSION_BYTES:
        raise VQCodecError(  # a property of the image, not a bug: a huge grid's map, a fine tone layer
            f"the header's extension records ({len(records)} bytes: granularity map, tone layer) exceed the format's "
            f"{MAX_EXTENSION_BYTES}; encode with --granularity 16 or --tone off"
        )
    return head + EXTENSIONS.pack(len(records)) + records


def _parse_extensions(data: bytes, at: int, version: int) -> tuple[dict[str, int | bytes], int]:
    """Header fields from the extension records at ``at`` → (fields, offset after them)."""
    if len(data) < at + EXTENSIONS.size:
        raise BitstreamError("truncated file: header incomplete")
    (length,) = EXTENSIONS.unpack_from(data, at)
    at += EXTENSIONS.size
    end = at + length
    if length > MAX_EXTENSION_BYTES or len(data) < end:
        raise BitstreamError(f"invalid header extension length {length}")
    fields: dict[str, int | bytes] = {}
    seen: set[int] = set()
    while at < end:
        if end - at < RECORD.size:
            raise BitstreamError("corrupted header: truncated extension record")
        kind, size = RECORD.unpack_from(data, at)
        at += RECORD.size
        if kind in seen or at + size > end:
            raise BitstreamError(f"corrupted header: bad extension record {kind}")
        seen.add(kind)
        if kind == EXT_CODED_SIZE and size == CODED_SIZE.size:
            fields["coded_width"], fields["coded_height"] = CODED_SIZE.unpack_from(data, at)
            if min(fields["coded_width"], fields["coded_height"]) < 1:
                raise BitstreamError("corrupted header: coded size 0")
        elif kind == EXT_CONTEXT_MODEL and size == FINGERPRINT_BYTES and version >= 3:
            fields["context_fingerprint"] = data[at : at + size]
        elif kind == EXT_GRANULARITY and size >= 1 and version >= 4:
            fields["granularity_map"] = data[at : at + size]
        elif kind == EXT_TONE and size >= 1 and version >= 5:
            fields["tone"] = data[at : at + size]
        else:
            raise BitstreamError(f"unsupported header extension {kind} (written by a newer vqcodec?)")
        at += size
    if not fields:
        raise BitstreamError(f"corrupted header: a version-{version} header without extensions")
    return fields, end


def pack(header: Header, payload: bytes) -> bytes:
    """Header + payload → a complete plain ``.vqc`` file."""
    if header.packetized:
        raise ValueError("use pack_packets for a packetized header")
    body = _header_bytes(header, len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def with_header(data: bytes, **changes) -> bytes:
    """An intact file (plain or packetized, every packet present) with header fields changed; the
    payloads are kept as they are, so only fields that do not change their meaning may change."""
    stream = read(data)
    header = dataclasses.replace(stream.header, **changes)
    if not header.packetized:
        return pack(header, stream.payload)
    if stream.lost_packets:
        raise ValueError("a packetized file needs every packet to be rewritten")
    return pack_packets(header, [stream.packets[k] for k in range(header.packets)])


def packet_assignment(grid_height: int, grid_width: int, packets: int) -> np.ndarray:
    """Packet number of every grid position ``[h, w]``: ``(r·A + c) mod K`` with ``A = max(1, round(0.382·K))``."""
    a = max(1, round(0.382 * packets))
    rows = np.arange(grid_height)[:, None]
    cols = np.arange(grid_width)[None, :]
    return (rows * a + cols) % packets


def pack_packets(header: Header, payloads: list[bytes]) -> bytes:
    """Packetized header + one payload per packet (packet k's indices, see :func:`packet_assignment`)."""
    if not header.packetized or header.packets != len(payloads):
        raise ValueError("header must be packetized with one payload per packet")
    head = _header_bytes(header, header.packets)
    head_crc = zlib.crc32(head)
    parts = [head, struct.pack("<I", head_crc)]
    for k, payload in enumerate(payloads):
        if len(payload) > MAX_PACKET_PAYLOAD:
            raise ValueError(f"packet {k} holds {len(payload)} bytes, more than {MAX_PACKET_PAYLOAD}: use more packets")
        body = PACKET_HEAD.pack(PACKET_SYNC, k, len(payload)) + payload
        parts += [body, struct.pack("<I", zlib.crc32(body, head_crc))]
    return b"".join(parts)


@dataclass
class Stream:
    """A parsed file: the plain payload, or the packets that survived (by packet number)."""

    header: Header
    payload: bytes | None = None
    packets: dict[int, bytes] = field(default_factory=dict)
    damaged_bytes: int = 0  # bytes skipped while looking for valid packets

    @property
    def lost_packets(self) -> list[int]:
        return [k for k in range(self.header.packets) if k not in self.packets]


def unpack(data: bytes, max_pixels: int | None = None) -> tuple[Header, bytes]:
    """A plain ``.vqc`` file → (header, payload), checking magic, version, sizes and CRC."""
    stream = read(data, max_pixels)
    if stream.header.packetized:
        raise BitstreamError("packetized file: read it with container.read")
    return stream.header, stream.payload


def _parse_header(data: bytes) -> tuple[Header, int, int]:
    """``(header, offset after its fields and extensions, last fixed field)``, unvalidated; the last field is
    the payload length of a plain file and the packet count of a packetized one."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise BitstreamError("not a vqcodec file (bad magic bytes)")
    if len(data) < 7:
        raise BitstreamError("truncated file: header incomplete")
    version, flags, id_len = data[4], data[5], data[6]
    if version > VERSION:
        raise UnsupportedVersionError(
            f"file uses bitstream format version {version}; this vqcodec reads up to version {VERSION} — upgrade vqcodec"
        )
    if version < 1:
        raise BitstreamError(f"invalid format version {version}")
    if flags & ~KNOWN_FLAGS:
        raise BitstreamError(f"unsupported flags 0x{flags:02x} (written by a newer vqcodec?)")
    if not 1 <= id_len <= MAX_MODEL_ID:
        raise BitstreamError("invalid model id length")
    fixed_at = 7 + id_len
    fixed = FIXED_PACKETIZED if flags & FLAG_PACKETIZED else FIXED
    if len(data) < fixed_at + fixed.size + 4:  # every file has 4 more bytes: a CRC
        raise BitstreamError("truncated file: header incomplete")
    try:
        model_id = data[7:fixed_at].decode("utf-8")
    except UnicodeDecodeError:
        raise BitstreamError("corrupted header: model id is not UTF-8") from None
    fp, level, width, height, gw, gh, factor, entropy_model, last = fixed.unpack_from(data, fixed_at)
    packets = last if flags & FLAG_PACKETIZED else 0
    end = fixed_at + fixed.size
    extensions: dict[str, int] = {}
    if version >= 2:
        extensions, end = _parse_extensions(data, end, version)
        if len(data) < end + 4:
            raise BitstreamError("truncated file: header incomplete")
    header = Header(model_id, fp, level, width, height, gw, gh, factor, entropy_model, flags, packets, **extensions)
    if header.version > version:
        raise BitstreamError(f"corrupted header: its fields need format version {header.version}, it says {version}")
    return header, end, last


def _check_header_crc(data: bytes, head_end: int) -> int:
    (head_crc,) = struct.unpack_from("<I", data, head_end)
    if zlib.crc32(data[:head_end]) != head_crc:
        raise BitstreamError("corrupted header: CRC-32 mismatch (a packetized file cannot be decoded without its header)")
    return head_crc


def read_header(data: bytes, max_pixels: int | None = None) -> Header:
    """The validated header alone, from the start of a file: the payload is neither needed nor
    checked (a plain file's CRC covers the whole file; a packetized header's own CRC is checked)."""
    data = bytes(data[: 7 + MAX_MODEL_ID + FIXED.size + EXTENSIONS.size + MAX_EXTENSION_BYTES + 4])
    header, head_end, _ = _parse_header(data)
    if header.packetized:
        _check_header_crc(data, head_end)
    header.validate(max_pixels)
    return header


def read(data: bytes, max_pixels: int | None = None) -> Stream:
    """Any ``.vqc`` file → :class:`Stream`. A plain file must be intact; a packetized one needs an
    intact header, and every packet that fails its CRC or is missing is reported as lost."""
    data = bytes(data)
    header, payload_at, payload_len = _parse_header(data)
    if header.packetized:
        return _read_packets(data, header, payload_at, max_pixels)
    expected = payload_at + payload_len + 4
    if len(data) < expected:
        raise BitstreamError(f"truncated file: {len(data)} bytes, header announces {expected}")
    if len(data) > expected:
        raise BitstreamError(f"corrupted file: {len(data) - expected} unexpected trailing bytes")
    (crc,) = struct.unpack_from("<I", data, expected - 4)
    if zlib.crc32(data[: expected - 4]) != crc:
        raise BitstreamError("corrupted file: CRC-32 mismatch")
    header.validate(max_pixels)
    return Stream(header, payload=data[payload_at : payload_at + payload_len])


def _read_packets(data: bytes, header: Header, head_end: int, max_pixels: int | None) -> Stream:
    head_crc = _check_header_crc(data, head_end)
    header.validate(max_pixels)
    count = header.packets
    stream = Stream(header)
    # Walk the packets; after damage, resynchronise on the next sync bytes whose packet checks out.
    # CRC work is bounded so that a hostile file full of sync bytes cannot make this quadratic.
    budget = 16 * len(data) + (1 << 20)
    pos = head_end + 4
    while pos < len(data):
        span = _packet_span(data, pos, count)
        if span is not None:
            k, end = span
            budget -= end - pos
            if budget < 0:
                stream.damaged_bytes += len(data) - pos
                break
            (crc,) = struct.unpack_from("<I", data, end - 4)
            if zlib.crc32(data[pos : end - 4], head_crc) == crc:
                if k not in stream.packets:
                    stream.packets[k] = data[pos + PACKET_HEAD.size : end - 4]
                pos = end
                continue
        next_sync = data.find(PACKET_SYNC, pos + 1)
        end = len(data) if next_sync < 0 else next_sync
        stream.damaged_bytes += end - pos
        pos = end
    return stream


def _packet_span(data: bytes, pos: int, count: int) -> tuple[int, int] | None:
    """(packet number, end offset) if the bytes at ``pos`` look like a packet header."""
    if len(data) < pos + PACKET_OVERHEAD:
        return None
    sync, k, length = PACKET_HEAD.unpack_from(data, pos)
    end = pos + PACKET_OVERHEAD + length
    if sync != PACKET_SYNC or k >= count or end > len(data):
        return None
    return k, end
