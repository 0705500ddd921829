import struct
import zlib

import pytest

from vqcodec.codec import container
from vqcodec.codec.container import Header, pack, unpack
from vqcodec.errors import BitstreamError, UnsupportedVersionError

HEADER = Header(model_id="tiny", fingerprint=bytes(range(8)), level=256, width=65, height=257, grid_width=5,
                grid_height=17, factor=16, entropy_model=1)


def test_round_trip():
    data = pack(HEADER, b"payload")
    header, payload = unpack(data)
    assert header == HEADER and payload == b"payload"
    assert header.padding == (15, 15)


def test_golden_bytes():
    """The layout is the spec in docs/bitstream.md; changing it needs a new format version."""
    data = pack(HEADER, b"\xab")
    expected_body = (
        b"\x89VQC" + b"\x01\x00\x04" + b"tiny" + bytes(range(8))
        + struct.pack("<IIIHHBBI", 256, 65, 257, 5, 17, 16, 1, 1) + b"\xab"
    )
    assert data == expected_body + struct.pack("<I", zlib.crc32(expected_body))
    assert len(data) == 7 + 4 + 8 + 22 + 1 + 4


def test_every_truncation_is_detected():
    data = pack(HEADER, b"some payload bytes")
    for cut in range(len(data)):
        with pytest.raises(BitstreamError):
            unpack(data[:cut])


def test_every_bit_flip_is_detected():
    data = pack(HEADER, b"xyz")
    for i in range(len(data)):
        for bit in range(8):
            corrupt = bytearray(data)
            corrupt[i] ^= 1 << bit
            with pytest.raises(BitstreamError):
                unpack(bytes(corrupt))


def test_trailing_bytes_refused():
    with pytest.raises(BitstreamError, match="trailing"):
        unpack(pack(HEADER, b"x") + b"\0")


def test_newer_version_has_specific_error():
    data = bytearray(pack(HEADER, b"x"))
    data[4] = container.VERSION + 1
    with pytest.raises(UnsupportedVersionError, match="upgrade"):
        unpack(bytes(data))


def test_not_a_vqc_file():
    with pytest.raises(BitstreamError, match="magic"):
        unpack(b"\x89PNG\r\n\x1a\n" + bytes(100))


def test_huge_declared_size_refused_before_decoding():
    big = Header("tiny", bytes(8), 256, 100_000, 100_000, 6250, 6250, 16, 1)
    with pytest.raises(BitstreamError, match="limit"):
        unpack(pack(big, b"x"), max_pixels=1 << 26)


def test_inconsistent_grid_refused():
    bad = Header("tiny", bytes(8), 256, 64, 64, 5, 4, 16, 1)
    with pytest.raises(BitstreamError, match="grid"):
        unpack(pack(bad, b"x"))


def test_extension_records_past_the_format_limit_are_a_codec_error():
    """A huge grid's map plus a fine tone layer can outgrow the u16 extension length: the encoder
    says so in one line instead of failing inside the container."""
    from dataclasses import replace

    from vqcodec.errors import VQCodecError

    fits = replace(HEADER, granularity_map=b"\1" * 30_000, tone=b"\4\2\4" + b"\1" * 30_000)
    assert unpack(pack(fits, b"\0"))[0] == fits
    with pytest.raises(VQCodecError, match="--granularity 16 or --tone off"):
        pack(replace(fits, tone=b"\4\2\4" + b"\1" * 40_000), b"\0")
