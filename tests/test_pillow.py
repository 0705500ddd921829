"""The Pillow plugin: Image.open / load / save / thumbnail on .vqc files, with a tiny model."""

import io

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

import vqcodec.pillow
from vqcodec import Codec


@pytest.fixture
def tiny(tiny_model_path):
    vqcodec.pillow.configure(model=str(tiny_model_path), device="cpu")
    yield Codec.from_pretrained(tiny_model_path, device="cpu")
    vqcodec.pillow.configure()


def test_save_then_open_reads_the_header_only(tmp_path, tiny, photo, monkeypatch):
    Image.fromarray(photo).save(tmp_path / "p.vqc", level=16)
    data = (tmp_path / "p.vqc").read_bytes()
    assert data == tiny.encode(photo, level=16).data
    monkeypatch.setattr(vqcodec.pillow, "decode", lambda *a, **k: pytest.fail("decoded on open"))
    with Image.open(tmp_path / "p.vqc") as im:
        assert (im.format, im.size, im.mode, im.info["level"]) == ("VQC", (57, 40), "RGB", 16)


def test_save_takes_rate_control_and_scale(tmp_path, tiny, photo):
    Image.fromarray(photo).save(tmp_path / "r.vqc", max_bytes=80)
    assert (tmp_path / "r.vqc").stat().st_size <= 80
    Image.fromarray(photo).save(tmp_path / "s.vqc", level=16, scale=0.5)
    assert (tmp_path / "s.vqc").read_bytes() == tiny.encode(photo, level=16, scale=0.5).data
    assert Image.open(tmp_path / "s.vqc").size == (57, 40)


def test_load_decodes_like_the_codec(tmp_path, tiny, photo):
    data = tiny.encode(photo, level=16).data
    (tmp_path / "p.vqc").write_bytes(data)
    with Image.open(tmp_path / "p.vqc") as im:
        pixels = np.asarray(im)
    assert np.array_equal(pixels, np.asarray(tiny.decode(data)))
    im = Image.open(io.BytesIO(data))  # file objects too, detected by the magic bytes alone
    im.thumbnail((20, 20))
    assert max(im.size) == 20 and im.mode == "RGB"


def test_bad_files_raise_what_pillow_users_expect(tmp_path, tiny, photo):
    data = tiny.encode(photo, level=16).data
    (tmp_path / "trunc.vqc").write_bytes(data[:10])
    with pytest.raises(UnidentifiedImageError, match="truncated"):
        Image.open(tmp_path / "trunc.vqc")
    corrupt = bytearray(data)
    corrupt[-6] ^= 0xFF  # payload damaged: the header still opens, decoding fails
    (tmp_path / "bad.vqc").write_bytes(bytes(corrupt))
    with Image.open(tmp_path / "bad.vqc") as im, pytest.raises(OSError, match="CRC"):
        im.load()
    with pytest.raises(OSError, match="no operating point fits 5 bytes"):
        Image.fromarray(photo).save(tmp_path / "x.vqc", max_bytes=5)
    with pytest.raises(OSError, match="level 5 is not available"):
        Image.fromarray(photo).save(tmp_path / "x.vqc", level=5)
