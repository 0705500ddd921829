"""Property-based checks: whatever bytes arrive, decoding ends in an image or a VQCodecError."""

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vqcodec import Codec
from vqcodec.codec.container import MAGIC, Header, pack, unpack
from vqcodec.entropy import StaticPrior, decode_symbols
from vqcodec.errors import BitstreamError, VQCodecError


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_unpack_random_bytes(data):
    try:
        header, payload = unpack(data)
    except BitstreamError:
        return
    assert pack(header, payload) == data


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_unpack_random_bytes_after_magic(data):
    with pytest.raises(BitstreamError):
        unpack(MAGIC + data)  # the CRC makes a random tail fail


@given(st.binary(max_size=64), st.integers(1, 4096), st.integers(0, 2000))
@settings(max_examples=200, deadline=None)
def test_entropy_decoder_on_random_payloads(payload, size, count):
    try:
        symbols = decode_symbols(payload, count, StaticPrior.uniform(size))
    except BitstreamError:
        return
    assert symbols.shape == (count,) and (symbols >= 0).all() and (symbols < size).all()


@given(
    width=st.integers(1, 64), height=st.integers(1, 64), level=st.sampled_from([4, 16, 64, 5, 0, 2**32 - 1]),
    entropy=st.integers(0, 255), payload=st.binary(max_size=40), factor=st.sampled_from([16, 8, 1]),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_valid_crc_hostile_fields(tiny_model_path, width, height, level, entropy, payload, factor):
    """Well-formed containers with arbitrary field values (correct CRC) never crash the decoder."""
    codec = _codec(tiny_model_path)
    header = Header("tiny", codec.fingerprint, level, width, height, -(-width // factor), -(-height // factor), factor,
                    entropy)
    try:
        image = codec.decode(pack(header, payload))
    except VQCodecError:
        return
    assert image.size == (width, height)


def test_header_claiming_gigapixels_is_refused_cheaply(tiny_model_path):
    codec = _codec(tiny_model_path)
    body = MAGIC + bytes([1, 0, 4]) + b"tiny" + codec.fingerprint + struct.pack("<IIIHHBBI", 64, 65535, 65535, 4096, 4096, 16, 1, 0)
    with pytest.raises(BitstreamError, match="limit"):
        codec.decode(body + struct.pack("<I", zlib.crc32(body)))


_CODECS: dict = {}


def _codec(path) -> Codec:
    if str(path) not in _CODECS:
        _CODECS.clear()
        _CODECS[str(path)] = Codec.from_pretrained(path, device="cpu", max_pixels=1 << 20)
    return _CODECS[str(path)]


def test_decode_output_is_deterministic(tiny_model_path):
    codec = _codec(tiny_model_path)
    img = np.random.default_rng(3).integers(0, 256, (33, 47, 3), dtype=np.uint8)
    data = codec.encode(img, level=16)
    assert np.array_equal(np.asarray(codec.decode(data)), np.asarray(codec.decode(data)))
