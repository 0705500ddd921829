"""The ``.vqc`` container, format version 1. The spec is ``docs/bitstream.md``; keep both in sync.

All integers are little-endian. Layout::

    offset size field
    0      4    magic  b"\\x89VQC"
    4      1    format version (1)
    5      1    flags (0; bits are reserved for packetized streams)
    6      1    model id length N (1..64)
    7      N    model id, UTF-8
    7+N    8    weights fingerprint (first 8 bytes of SHA-256 over the model's tensors)
    +8     4    level: codebook size S (u32)
    +4     4    image width  (u32, ≥1)
    +4     4    image height (u32, ≥1)
    +4     2    grid width  w (u16)  = ceil(width / f)
    +2     2    grid height h (u16)  = ceil(height / f)
    +2     1    downsampling factor f (u8, 16)
    +1     1    entropy-model id (u8: 0 uniform, 1 static prior of the level)
    +1     4    payload length P (u32)
    +4     P    payload: range-coded indices, row-major
    +P     4    CRC-32 of every byte before it
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ..errors import BitstreamError, UnsupportedVersionError

MAGIC = b"\x89VQC"
VERSION = 1
MAX_MODEL_ID = 64
_FIXED = struct.Struct("<8sIIIHHBBI")


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

    @property
    def padding(self) -> tuple[int, int]:
        """Pixels added on the right and bottom to reach a multiple of the factor."""
        return self.grid_width * self.factor - self.width, self.grid_height * self.factor - self.height

    def validate(self, max_pixels: int | None = None) -> None:
        if self.width < 1 or self.height < 1:
            raise BitstreamError(f"invalid image size {self.width}x{self.height}")
        if self.factor < 1:
            raise BitstreamError("invalid downsampling factor 0")
        if (
            self.grid_width != -(-self.width // self.factor)
            or self.grid_height != -(-self.height // self.factor)
        ):
            raise BitstreamError("header grid size does not match the image size")
        if self.level < 1:
            raise BitstreamError("invalid level 0")
        if max_pixels is not None and self.width * self.height > max_pixels:
            raise BitstreamError(
                f"header claims {self.width}x{self.height} = {self.width * self.height} pixels, more than the "
                f"limit of {max_pixels} (raise it with --max-pixels if you trust this file)"
            )


def pack(header: Header, payload: bytes) -> bytes:
    """Header + payload → a complete ``.vqc`` file."""
    model_id = header.model_id.encode("utf-8")
    if not 1 <= len(model_id) <= MAX_MODEL_ID:
        raise ValueError(f"model id must be 1..{MAX_MODEL_ID} bytes of UTF-8")
    if len(header.fingerprint) != 8:
        raise ValueError("fingerprint must be 8 bytes")
    body = (
        MAGIC
        + bytes([VERSION, header.flags, len(model_id)])
        + model_id
        + _FIXED.pack(
            header.fingerprint, header.level, header.width, header.height, header.grid_width,
            header.grid_height, header.factor, header.entropy_model, len(payload),
        )
        + payload
    )
    return body + struct.pack("<I", zlib.crc32(body))


def unpack(data: bytes, max_pixels: int | None = None) -> tuple[Header, bytes]:
    """A ``.vqc`` file → (header, payload), checking magic, version, sizes and CRC."""
    data = bytes(data)
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
    if flags != 0:
        raise BitstreamError(f"unsupported flags 0x{flags:02x} (packetized streams need a newer vqcodec)")
    if not 1 <= id_len <= MAX_MODEL_ID:
        raise BitstreamError("invalid model id length")
    fixed_at = 7 + id_len
    payload_at = fixed_at + _FIXED.size
    if len(data) < payload_at + 4:
        raise BitstreamError("truncated file: header incomplete")
    try:
        model_id = data[7:fixed_at].decode("utf-8")
    except UnicodeDecodeError:
        raise BitstreamError("corrupted header: model id is not UTF-8") from None
    fp, level, width, height, gw, gh, factor, entropy_model, payload_len = _FIXED.unpack_from(data, fixed_at)
    expected = payload_at + payload_len + 4
    if len(data) < expected:
        raise BitstreamError(f"truncated file: {len(data)} bytes, header announces {expected}")
    if len(data) > expected:
        raise BitstreamError(f"corrupted file: {len(data) - expected} unexpected trailing bytes")
    (crc,) = struct.unpack_from("<I", data, expected - 4)
    if zlib.crc32(data[: expected - 4]) != crc:
        raise BitstreamError("corrupted file: CRC-32 mismatch")
    header = Header(model_id, fp, level, width, height, gw, gh, factor, entropy_model, flags)
    header.validate(max_pixels)
    return header, data[payload_at : payload_at + payload_len]
