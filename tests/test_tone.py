import numpy as np
import pytest

from vqcodec.codec import tone
from vqcodec.errors import BitstreamError


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))


def _smooth_photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    base = np.stack([120 + 80 * x, 90 + 60 * y, 160 - 70 * x * y], -1)
    return np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)


def test_interpolation_is_a_partition_of_unity_that_keeps_a_full_size_grid():
    for n_out, n_in in ((100, 4), (33, 5), (7, 7), (1, 1)):
        weights = tone.interpolation(n_out, n_in)
        assert np.allclose(weights.sum(1), 1) and (weights >= 0).all()
    assert np.allclose(tone.interpolation(6, 6), np.eye(6))


def test_a_blotchy_decode_is_corrected_and_the_layer_round_trips_through_bytes():
    image = _smooth_photo(300, 200)
    # a decode with wrong, slowly varying colour: what the tone layer exists to fix
    y, x = np.mgrid[0:200, 0:300]
    blotch = np.stack([12 * np.sin(x / 40), -9 * np.cos(y / 30), 7 * np.sin((x + y) / 50)], -1)
    decoded = np.clip(image + blotch, 0, 255).astype(np.uint8)
    layer = tone.quantize(tone.fit(image, decoded, 32), 32, (2, 4))
    data = tone.encode_layer(layer)
    back = tone.decode_layer(data, 300, 200)
    assert back.block == 32 and back.steps == (2, 4) and np.array_equal(back.values, layer.values)
    assert back.values.shape == (3, 7, 10)
    corrected = tone.apply_layer(decoded, back)
    assert corrected.dtype == np.uint8 and corrected.shape == decoded.shape
    assert _psnr(image, corrected) > _psnr(image, decoded) + 6
    assert len(data) < 3 * 7 * 10  # well under a byte per value


def test_a_right_decode_needs_almost_nothing():
    image = _smooth_photo(256, 256, seed=1)
    layer = tone.quantize(tone.fit(image, image, 64), 64, (4, 8))
    assert not layer.values.any()
    assert len(tone.encode_layer(layer)) <= 5
    assert np.array_equal(tone.apply_layer(image, layer), image)


def test_strips_give_the_same_fit_and_correction_as_one_piece(monkeypatch):
    image = _smooth_photo(90, 70, seed=2)
    decoded = np.clip(image.astype(int) + 9, 0, 255).astype(np.uint8)
    whole = tone.fit(image, decoded, 16)
    layer = tone.quantize(whole, 16, (2, 3))
    applied = tone.apply_layer(decoded, layer)
    monkeypatch.setattr(tone, "ROWS", 16)
    assert np.allclose(tone.fit(image, decoded, 16), whole)
    assert np.array_equal(tone.apply_layer(decoded, layer), applied)


def test_values_are_clipped_and_invalid_layers_refused():
    layer = tone.quantize(np.full((3, 2, 2), 1e6), 16, (1, 1))
    assert layer.values.max() == tone.MAX_VALUE
    assert np.array_equal(tone.decode_layer(tone.encode_layer(layer), 32, 32).values, layer.values)
    with pytest.raises(ValueError):
        tone.encode_layer(tone.ToneLayer(24, (2, 4), np.zeros((3, 1, 1), dtype=np.int64)))
    with pytest.raises(ValueError):
        tone.encode_layer(tone.ToneLayer(16, (0, 4), np.zeros((3, 1, 1), dtype=np.int64)))


@pytest.mark.parametrize("data", [b"", b"\x05\x02", b"\x03\x02\x04\x00", b"\x05\x00\x04\x00", b"\xff\x02\x04\x00"])
def test_malformed_tone_bytes_raise_bitstream_errors(data):
    with pytest.raises(BitstreamError):
        tone.decode_layer(data, 64, 64)


# -- in the codec ----------------------------------------------------------------------------------
def test_codec_tone_layer_brings_the_decode_closer_and_decodes_at_any_realism(codec):
    image = _smooth_photo(120, 90, seed=3)
    plain = codec.encode(image, level=16, tone="off")
    toned = codec.encode(image, level=16, tone="on")
    assert codec.encode(image, level=16).data == plain.data  # a fixed operating point adds none by default
    assert toned.header.version == 5 and toned.header.tone and not plain.header.tone
    assert len(toned.data) == len(plain.data) + len(toned.header.tone) + 3 + 2 * (plain.header.version == 1)
    before = np.asarray(codec.decode(plain.data))
    after = np.asarray(codec.decode(toned.data))
    assert _psnr(image, after) > _psnr(image, before) + 1
    layer = tone.decode_layer(toned.header.tone, 120, 90)
    assert np.array_equal(after, tone.apply_layer(before, layer))


def test_rate_control_adds_a_tone_layer_only_within_the_budget(codec):
    image = _smooth_photo(170, 120, seed=4)
    for budget in (80, 120, 200):
        auto = codec.encode(image, max_bytes=budget, granularity="16")
        on = codec.encode(image, max_bytes=budget, granularity="16", tone="on")
        off = codec.encode(image, max_bytes=budget, granularity="16", tone="off")
        assert max(len(auto.data), len(on.data), len(off.data)) <= budget
        assert not off.header.tone
        scores = {name: _psnr(image, np.asarray(codec.decode(f.data))) for name, f in (("auto", auto), ("off", off))}
        assert scores["auto"] >= scores["off"] - 1e-9  # auto keeps the plain file unless the layer wins
    assert on.header.tone


def test_with_header_keeps_packets_and_refuses_lost_ones(codec):
    from vqcodec.codec import container

    image = _smooth_photo(120, 90, seed=5)
    packed = codec.encode(image, level=16, packets=4, tone="on")
    stream = container.read(packed.data)
    assert stream.header.packetized and stream.header.tone and not stream.lost_packets
    assert np.array_equal(np.asarray(codec.decode(packed.data)),
                          tone.apply_layer(np.asarray(codec.decode(codec.encode(image, level=16, packets=4).data)),
                                           tone.decode_layer(stream.header.tone, 120, 90)))
    damaged = packed.data[:-3]
    with pytest.raises(ValueError, match="every packet"):
        container.with_header(damaged, tone=b"")


def test_cli_tone_option_and_info(tmp_path, tiny_model_path, capsys):
    from PIL import Image

    from vqcodec.cli import main

    src = tmp_path / "smooth.png"
    Image.fromarray(_smooth_photo(120, 90, seed=6)).save(src)
    out = tmp_path / "smooth.vqc"
    assert main(["encode", str(src), "-o", str(out), "--model", str(tiny_model_path), "--level", "16", "--tone", "on"]) == 0
    assert "tone layer" in capsys.readouterr().err
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "format       version 5" in info and "32-pixel cells (3x3x4), steps 4/8" in info
    with pytest.raises(SystemExit, match="2"):
        main(["encode", str(src), "-o", str(tmp_path / "x.vqc"), "--model", str(tiny_model_path), "--tone", "loud"])
