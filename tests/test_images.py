import io
import os

import numpy as np
import pytest
from PIL import Image

from vqcodec.codec.image_io import ImageWarning, encode_image_file, load_image
from vqcodec.errors import ImageError
from vqcodec.fileio import atomic_write


def _png(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


def test_rgb_passes_through():
    arr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(load_image(_png(Image.fromarray(arr)))), arr)


def test_grey_is_replicated():
    im = load_image(_png(Image.new("L", (3, 2), 77)))
    assert im.mode == "RGB" and np.all(np.asarray(im) == 77)


def test_alpha_dropped_with_warning():
    with pytest.warns(ImageWarning, match="alpha"):
        im = load_image(_png(Image.new("RGBA", (4, 4), (10, 20, 30, 0))))
    assert np.asarray(im)[0, 0].tolist() == [10, 20, 30]


def test_palette_expanded():
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    assert np.asarray(load_image(_png(p)))[0, 0].tolist() == [200, 100, 50]


def test_sixteen_bit_scaled():
    arr = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    im = load_image(_png(Image.fromarray(arr)))
    assert np.asarray(im)[0, :, 0].tolist() == [0, 1, 255, 128]


def test_exif_orientation_applied():
    im = Image.new("RGB", (4, 2), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif)
    assert load_image(buf.getvalue()).size == (2, 4)


def test_decompression_bomb_refused_before_decoding():
    with pytest.raises(ImageError, match="limit"):
        load_image(_png(Image.new("L", (100, 100))), max_pixels=5000)


def test_not_an_image():
    with pytest.raises(ImageError, match="not an image"):
        load_image(b"hello, I am text")


def test_truncated_png():
    data = _png(Image.new("RGB", (64, 64), (1, 2, 3)))
    with pytest.raises(ImageError):
        load_image(data[: len(data) // 2])


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_atomic_write_refuses_overwrite(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write(target, b"one")
    with pytest.raises(FileExistsError):
        atomic_write(target, b"two")
    atomic_write(target, b"two", force=True)
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_output_format_follows_extension():
    im = Image.new("RGB", (4, 4))
    assert encode_image_file(im, "x.png")[:4] == b"\x89PNG"
    assert encode_image_file(im, "x.jpg")[:2] == b"\xff\xd8"
    assert encode_image_file(im, "x.unknown")[:4] == b"\x89PNG"
