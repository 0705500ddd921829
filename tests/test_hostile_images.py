"""Hostile and unusual input images: each ends in its documented outcome (docs/security.md), through
:class:`Codec` with a tiny model and, for the refused ones, through the CLI in a real process."""

import io
import os
import resource
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_model
from PIL import Image

from vqcodec import Codec
from vqcodec.codec import container
from vqcodec.codec.image_io import ImageWarning, load_image
from vqcodec.errors import ImageError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def codec(model_path) -> Codec:
    return Codec.from_pretrained(model_path, device="cpu")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def crafted_png(width: int, height: int, depth: int = 8, colour_type: int = 2, raw: bytes = b"") -> bytes:
    """A PNG with any header (valid chunk CRCs), whatever its pixel data says."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _noise(w: int, h: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(w * h).integers(0, 256, (h, w, 3), dtype=np.uint8))


GIGAPIXEL_PNG = crafted_png(40_000, 40_000)  # 1.6 gigapixels declared in 70 bytes: Pillow's bomb guard refuses it
OVER_LIMIT_PNG = crafted_png(9000, 8000)  # 72 Mpx: under Pillow's guard (89 Mpx), over our 67 Mpx default


def refused_inputs() -> dict[str, bytes]:
    png = _save(_noise(64, 48), "PNG")
    jpeg = _save(_noise(64, 48), "JPEG", quality=90)
    return {
        "truncated-png.png": png[: len(png) // 2],
        "truncated-png-header.png": png[:20],
        "truncated-jpeg.jpg": jpeg[: len(jpeg) // 2],
        "truncated-jpeg-header.jpg": jpeg[:30],
        "text.png": b"this is not an image, whatever its name says\n",
        "empty.png": b"",
        "zero-by-zero-png.png": crafted_png(0, 0),
        "zero-by-zero-ppm.ppm": b"P6\n0 0\n255\n",
        "gigapixel.png": GIGAPIXEL_PNG,
        "over-the-limit.png": OVER_LIMIT_PNG,
    }


@pytest.mark.parametrize("name", sorted(refused_inputs()))
def test_refused_inputs_raise_image_error_naming_the_file(codec, tmp_path, name):
    path = tmp_path / name
    path.write_bytes(refused_inputs()[name])
    with pytest.raises(ImageError, match=name.replace(".", r"\.")):
        codec.encode(path)


@pytest.mark.parametrize("data, message", [
    (GIGAPIXEL_PNG, "refused as a decompression bomb"),
    (OVER_LIMIT_PNG, "9000x8000 = 72000000 pixels exceeds the limit of 67108864"),
])
def test_bomb_headers_fail_fast_without_allocating(codec, tmp_path, data, message):
    """Refused from the header alone: no time spent, no pixel buffer (1.6 Gpx of RGB would be 4.8 GB)."""
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ImageError, match=message):
        codec.encode(path)
    assert time.perf_counter() - start < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 64 * 1024  # kB


def test_pillow_bomb_guard_holds_when_our_limit_is_raised():
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(GIGAPIXEL_PNG, max_pixels=1 << 40)


@pytest.mark.parametrize("size", [(1, 1), (65535, 1)])
def test_tiny_and_extreme_aspect_images_round_trip(codec, size):
    """1×1 and 65535×1 encode and decode to the same size (65535×1 is a 4096×1 grid)."""
    data = codec.encode(_noise(*size), level=16).data
    header = container.read_header(data)
    assert (header.width, header.height, header.grid_width, header.grid_height) == (*size, -(-size[0] // 16), 1)
    assert codec.decode(data).size == size


def test_sixteen_bit_rgb_png_keeps_the_high_byte():
    """Pillow reads 16-bit colour PNGs as v >> 8: at most 1 off round(v / 257) (grey: exact, test_images)."""
    values = np.array([0, 255, 256, 383, 384, 32896, 33023, 65535], dtype=">u2")
    raw = b"\x00" + np.repeat(values, 3).astype(">u2").tobytes()
    im = load_image(crafted_png(len(values), 1, depth=16, colour_type=2, raw=raw))
    got = np.asarray(im)[0, :, 0].astype(int)
    assert got.tolist() == (values.astype(int) >> 8).tolist()
    assert np.abs(got - np.rint(values / 257)).max() <= 1


def test_cmyk_jpeg_is_converted_by_pillow(codec, tmp_path):
    path = tmp_path / "cyan.jpg"
    path.write_bytes(_save(Image.new("CMYK", (33, 17), (255, 0, 0, 0)), "JPEG", quality=95))
    im = load_image(path)
    assert im.mode == "RGB" and im.size == (33, 17)
    assert np.abs(np.asarray(im).astype(int) - [0, 255, 255]).max() <= 3
    assert codec.decode(codec.encode(path).data).size == (33, 17)


def test_palette_with_transparency_drops_alpha_with_a_warning(codec):
    p = Image.new("P", (20, 10), 1)
    p.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    data = _save(p, "PNG", transparency=1)
    with pytest.warns(ImageWarning, match="alpha channel dropped"):
        im = load_image(data)
    assert np.all(np.asarray(im) == [200, 100, 50])
    with pytest.warns(ImageWarning, match="alpha"):
        assert codec.decode(codec.encode(Image.open(io.BytesIO(data))).data).size == (20, 10)


@pytest.mark.parametrize("fmt", ["GIF", "PNG"])
def test_animated_image_uses_its_first_frame_with_a_warning(fmt):
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    data = _save(frames[0], fmt, save_all=True, append_images=frames[1:])
    with pytest.warns(ImageWarning, match="animated image, only the first frame"):
        im = load_image(data)
    assert np.abs(np.asarray(im).astype(int) - [255, 0, 0]).max() <= 2


# EXIF orientation → (displayed size, displayed position of the stored top-left pixel) for a 4×2 image
ORIENTATIONS = {
    1: ((4, 2), (0, 0)), 2: ((4, 2), (3, 0)), 3: ((4, 2), (3, 1)), 4: ((4, 2), (0, 1)),
    5: ((2, 4), (0, 0)), 6: ((2, 4), (1, 0)), 7: ((2, 4), (1, 3)), 8: ((2, 4), (0, 3)),
}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_exif_orientation_is_applied(orientation):
    im = Image.new("RGB", (4, 2), (0, 0, 0))
    im.putpixel((0, 0), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = np.asarray(load_image(_save(im, "PNG", exif=exif)))
    size, marker = ORIENTATIONS[orientation]
    assert (out.shape[1], out.shape[0]) == size
    assert [tuple(p) for p in zip(*np.nonzero(out[..., 0])[::-1])] == [marker]


def test_exif_rotation_sets_the_encoded_size(codec):
    exif = Image.Exif()
    exif[0x0112] = 6
    data = codec.encode(load_image(_save(_noise(40, 17), "JPEG", exif=exif))).data
    header = container.read_header(data)
    assert (header.width, header.height) == (17, 40)


def test_cli_batch_reports_each_refused_image_and_keeps_going(tmp_path, model_path):
    """One real process over every refused input plus good and animated ones: exit 1, one line per
    bad file, no traceback, outputs only for the good ones, no temp files."""
    src = tmp_path / "in"
    src.mkdir()
    for name, data in refused_inputs().items():
        (src / name).write_bytes(data)
    _noise(40, 17).save(src / "good.png")
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 0, 255)]]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:])
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "vqcodec.cli", "encode", str(src), "-o", str(out), "--model", str(model_path)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("vqcodec: error: ")]
    bad = sorted(refused_inputs())
    assert len(errors) == len(bad) + 1  # one per file, then the summary
    for name in bad:
        assert sum(name in line for line in errors[:-1]) == 1, name
    assert f"{len(bad)} of {len(bad) + 2} inputs failed" in errors[-1]
    assert "animated image, only the first frame" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["anim.vqc", "good.vqc"]
