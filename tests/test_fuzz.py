"""Property-based checks: whatever bytes arrive, decoding ends in an image or a VQCodecError."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vqcodec import Codec
from vqcodec.codec import container
from vqcodec.codec.container import MAGIC, Header, pack, unpack
from vqcodec.entropy import StaticPrior, decode_symbols
from vqcodec.errors import BitstreamError, ModelMismatchError, VQCodecError
from vqcodec.testing.fuzz import fix_crcs
from vqcodec.testing.models import skewed_priors, tiny_model


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
    header = Header("tiny", codec.fingerprint, 64, 65535, 65535, 4096, 4096, 16, 1)
    with pytest.raises(BitstreamError, match="limit"):
        codec.decode(pack(header, b""))


_CODECS: dict = {}


def _codec(path) -> Codec:
    if str(path) not in _CODECS:
        _CODECS.clear()
        _CODECS[str(path)] = Codec.from_pretrained(path, device="cpu", max_pixels=1 << 20)
    return _CODECS[str(path)]


def test_decode_output_is_deterministic(tiny_model_path):
    codec = _codec(tiny_model_path)
    img = np.random.default_rng(3).integers(0, 256, (33, 47, 3), dtype=np.uint8)
    data = codec.encode(img, level=16).data
    assert np.array_equal(np.asarray(codec.decode(data)), np.asarray(codec.decode(data)))


def test_every_truncation_of_a_real_file_is_a_bitstream_error(tiny_model_path, photo):
    codec = _codec(tiny_model_path)
    data = codec.encode(photo, level=16).data
    for cut in range(len(data)):
        with pytest.raises(BitstreamError):
            codec.decode(data[:cut])
        with pytest.raises(BitstreamError):
            codec.decode(fix_crcs(data[:cut]))


def test_every_truncation_of_a_packetized_file_decodes_or_fails_cleanly(tiny_model_path, photo):
    """Once the header is complete, missing packet bytes are lost packets: an image all the same."""
    codec = _codec(tiny_model_path)
    data = codec.encode(photo, level=16, packets=4).data
    packets = container.read(data).packets.values()
    header_end = len(data) - sum(container.PACKET_OVERHEAD + len(p) for p in packets)  # the header and its CRC
    for cut in range(len(data)):
        try:
            image = codec.decode(data[:cut])
        except VQCodecError:
            assert cut < header_end, f"cut at {cut}"
            continue
        assert image.size == (57, 40)


@given(st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_bit_flips_past_the_crc_reach_the_decoder(tiny_model_path, photo, data):
    """Bit flips with the CRC recomputed get past the checksum; every one still ends cleanly."""
    codec = _codec(tiny_model_path)
    original = codec.encode(photo, level=16).data
    corrupt = bytearray(original[:-4])
    for _ in range(data.draw(st.integers(1, 3))):
        corrupt[data.draw(st.integers(0, len(corrupt) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    flipped = fix_crcs(bytes(corrupt) + b"\0" * 4)
    try:
        image = codec.decode(flipped)
    except VQCodecError:
        return
    header = container.read(flipped, codec.max_pixels).header
    assert image.size == (header.width, header.height)


def test_padding_does_not_multiply_the_pixel_limit(tiny_model_path):
    """A 1-pixel-wide image at the limit is padded to 16 columns: the network would run on 16x the limit."""
    limit = 1 << 12
    codec = Codec.from_pretrained(tiny_model_path, device="cpu", max_pixels=limit)
    header = Header("tiny", codec.fingerprint, 16, 1, limit, 1, limit // 16, 16, 1)
    with pytest.raises(BitstreamError, match="limit"):
        codec.decode(pack(header, b""))


def test_image_too_wide_for_the_format_is_an_image_error(tiny_model_path, monkeypatch):
    """65535·16 = 1048560 columns is the widest grid a header holds; wider is refused, not a struct.error."""
    codec = Codec.from_pretrained(tiny_model_path, device="cpu", max_pixels=1 << 21)
    monkeypatch.setattr(codec, "encode_indices", lambda x, level: torch.zeros(1, 1, -(-x.shape[-1] // 16), dtype=torch.long))
    with pytest.raises(VQCodecError):
        codec.encode(np.zeros((1, 1048577, 3), dtype=np.uint8), level=16)


def _planted_model_file(tmp_path, monkeypatch, photo) -> bytes:
    """A .vqc whose model id names a model file planted in the working directory."""
    from vqcodec.weights import save_model

    monkeypatch.chdir(tmp_path)
    model = tiny_model(name="planted.safetensors")
    save_model(tmp_path / "planted.safetensors", model, skewed_priors(model))
    return Codec.from_pretrained("planted.safetensors", device="cpu").encode(photo).data


def test_api_never_loads_the_model_a_file_names_from_a_local_path(tmp_path, monkeypatch, photo):
    """A .vqc file may only name registered models; a local model file is used only when the caller passes it."""
    import vqcodec

    data = _planted_model_file(tmp_path, monkeypatch, photo)
    with pytest.raises(ModelMismatchError, match="registered"):
        vqcodec.decode(data, device="cpu")


def test_cli_never_loads_the_model_a_file_names_from_a_local_path(tmp_path, monkeypatch, photo, capsys):
    from vqcodec.cli import main

    (tmp_path / "x.vqc").write_bytes(_planted_model_file(tmp_path, monkeypatch, photo))
    assert main(["decode", "x.vqc", "-o", "x.png"]) == 1
    assert "registered" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
