"""Operating points (scale, level) in the format, and rate control within a byte budget (tiny model)."""

import dataclasses
import struct
import sys
import zlib

import numpy as np
import pytest
import torch
from conftest import noisy_gradient
from PIL import Image

from vqcodec.cli import main
from vqcodec.codec import container, rate
from vqcodec.errors import BitstreamError, VQCodecError


@pytest.fixture
def big_photo():
    return noisy_gradient(120, 170, noise=30, seed=5)


def test_scaled_file_codes_the_resized_image_and_decodes_to_the_original_size(codec, big_photo):
    encoded = codec.encode(big_photo, level=16, scale=0.5, granularity="16")
    header = encoded.header
    assert (header.width, header.height, header.coded_size, header.version) == (170, 120, (85, 60), 2)
    assert (header.grid_width, header.grid_height) == (6, 4)
    assert encoded.data[4] == 2 and container.read_header(encoded.data) == header
    small = np.asarray(Image.fromarray(big_photo).resize((85, 60), Image.LANCZOS))
    assert codec.encode(small, level=16, granularity="16").data[-8:] != encoded.data[-8:]  # other header, same payload kind
    decoded = codec.decode(encoded.data)
    expected = codec.decode(codec.encode(small, level=16, granularity="16").data).resize((170, 120), Image.LANCZOS)
    assert decoded.size == (170, 120) and np.array_equal(np.asarray(decoded), np.asarray(expected))
    assert codec.encode(big_photo, level=16, scale=1.0).data == codec.encode(big_photo, level=16).data
    packed = codec.encode(big_photo, level=16, scale=0.5, packets=3, granularity="16")
    assert np.array_equal(np.asarray(codec.decode(packed.data)), np.asarray(decoded))


@pytest.mark.parametrize("scale", [0.0, -0.5, 2.5, float("nan")])
def test_bad_scale_is_refused(codec, big_photo, scale):
    with pytest.raises(VQCodecError, match="scale"):
        codec.encode(big_photo, scale=scale)


def test_one_encoder_pass_gives_every_level_the_same_indices(codec, big_photo):
    x = torch.from_numpy(big_photo).permute(2, 0, 1)[None].float() / 255
    grids = codec.runner.encode_levels(x, codec.levels)
    for level in codec.levels:
        assert torch.equal(grids[level], codec.encode_indices(x, level))


@pytest.mark.parametrize("granularity", ["16", "adaptive"])
@pytest.mark.parametrize("budget", [64, 75, 90, 110, 400])
def test_rate_control_never_exceeds_the_budget_and_spends_it(codec, big_photo, budget, granularity):
    encoded = codec.encode(big_photo, max_bytes=budget, granularity=granularity)
    assert len(encoded.data) <= budget
    # what each scale offers the fixed grid: the file of its largest level within the budget
    offers = []
    for s in rate.FIXED_SCALES:
        sizes = [len(codec.encode(big_photo, level=level, scale=s, granularity="16").data)
                 for level in sorted(codec.levels, reverse=True)]
        offers += [next(size for size in sizes if size <= budget)] if min(sizes) <= budget else []
    assert len(encoded.data) >= min(rate.FILL * budget, max(offers))
    assert codec.decode(encoded.data).size == (170, 120)


def test_fixed_grid_tries_larger_scales_when_full_size_cannot_fill_the_budget(codec, big_photo, monkeypatch):
    def encode(budget: int):
        return codec.encode(big_photo, max_bytes=budget, granularity="16", tone="off")

    finest = len(codec.encode(big_photo, level=max(codec.levels), granularity="16", tone="off").data)
    budget = round(1.4 * finest)
    # the decodes' PSNR decides, not the fill: make larger decodes score higher, then lower
    monkeypatch.setattr(rate._Ranking, "score", lambda self, file: file.header.coded_size[0])
    larger = encode(budget)
    assert larger.header.coded_size[0] > 170 and finest < len(larger.data) <= budget
    assert codec.decode(larger.data).size == (170, 120)
    coarsest = len(codec.encode(big_photo, level=min(codec.levels), granularity="16", tone="off").data)
    assert encode(coarsest).header.coded_size[0] <= 170  # full size fills this budget: no larger scale is tried
    monkeypatch.setattr(rate._Ranking, "score", lambda self, file: -file.header.coded_size[0])
    assert encode(budget).header.coded_size[0] <= 170  # a larger scale must also decode closer to win
    toned = codec.encode(big_photo, max_bytes=budget, granularity="16", tone="on")  # a layer weighed on both kinds
    assert toned.header.tone and len(toned.data) <= budget and codec.decode(toned.data).size == (170, 120)


def test_adaptive_search_weighs_an_unfilled_full_size_file_by_its_psnr(codec, big_photo, monkeypatch):
    finest = len(codec.encode(big_photo, level=max(codec.levels), granularity="16", tone="off").data)
    budget = round(1.4 * finest)  # full size cannot fill it; larger scales can

    def encode():
        return codec.encode(big_photo, max_bytes=budget, granularity="adaptive", tone="off")

    monkeypatch.setattr(rate._Ranking, "score", lambda self, file: -file.header.coded_size[0])
    assert encode().header.coded_size[0] <= 170  # full size decodes closest: it wins without filling the budget
    monkeypatch.setattr(rate._Ranking, "score", lambda self, file: file.header.coded_size[0])
    larger = encode()
    assert larger.header.coded_size[0] > 170 and len(larger.data) <= budget


def test_the_tone_step_reuses_the_rankings_decodes(codec, big_photo, monkeypatch):
    rankings, decodes = [], []
    init, decode = rate._Ranking.__init__, codec.decode
    monkeypatch.setattr(rate._Ranking, "__init__", lambda self, *a: (rankings.append(self), init(self, *a))[1])
    monkeypatch.setattr(codec, "decode", lambda data, *a, **k: (decodes.append(bytes(data)), decode(data, *a, **k))[1])
    finest = len(codec.encode(big_photo, level=max(codec.levels), granularity="16", tone="off").data)
    toned = codec.encode(big_photo, max_bytes=round(1.4 * finest), granularity="16", tone="on")
    scored = rankings[-1].scores
    assert len(scored) >= 2 and len(rankings[-1].kept) == 2  # the best of each kind: full size, larger
    assert all(decodes.count(data) == 1 for data in scored)  # the tone starts come from the kept decodes
    assert len(toned.data) <= round(1.4 * finest)


def test_rate_control_names_its_steps_on_a_terminal(codec, big_photo, monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    codec.encode(big_photo, max_bytes=110, granularity="adaptive", tone="on")
    assert capsys.readouterr().err == ""  # progress is off unless asked for
    codec.runner.progress = True
    codec.encode(big_photo, max_bytes=110, granularity="adaptive", tone="on")
    err = capsys.readouterr().err
    for step in ("rate control", "scale 1", "ranking", "adaptive", "tone layer"):
        assert step in err


def test_bpp_budget_counts_the_whole_file(codec, big_photo):
    encoded = codec.encode(big_photo, bpp=0.05)
    assert encoded.bpp <= 0.05 and len(encoded.data) <= 0.05 * 170 * 120 / 8
    assert len(codec.encode(big_photo, bpp=0.05, max_bytes=70).data) <= 70


def test_budget_problems_are_clear_errors(codec, big_photo):
    with pytest.raises(VQCodecError, match="no operating point fits 10 bytes"):
        codec.encode(big_photo, max_bytes=10)
    with pytest.raises(VQCodecError, match="not both"):
        codec.encode(big_photo, level=16, bpp=0.05)
    with pytest.raises(VQCodecError, match="bpp must be positive"):
        codec.encode(big_photo, bpp=0)


HEADER = container.Header(model_id="tiny", fingerprint=bytes(range(8)), level=256, width=65, height=257, grid_width=3,
                          grid_height=9, factor=16, entropy_model=1, coded_width=33, coded_height=129)


def test_version_2_golden_bytes():
    """Version 2 = version 1's fields, then the extension records; docs/bitstream.md has the spec."""
    data = container.pack(HEADER, b"\xab")
    body = (b"\x89VQC" + b"\x02\x00\x04" + b"tiny" + bytes(range(8)) + struct.pack("<IIIHHBBI", 256, 65, 257, 3, 9, 16, 1, 1)
            + struct.pack("<H", 11) + struct.pack("<BH", 1, 8) + struct.pack("<II", 33, 129) + b"\xab")
    assert data == body + struct.pack("<I", zlib.crc32(body))
    assert container.unpack(data) == (HEADER, b"\xab")


def _with_record(record: bytes) -> bytes:
    body = container.pack(HEADER, b"")[:-4]
    at = body.index(struct.pack("<H", 11))
    body = body[:at] + struct.pack("<H", len(record)) + record
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("record, message", [
    (struct.pack("<BH", 9, 0), "unsupported header extension 9"),
    (struct.pack("<BH", 1, 8) + struct.pack("<II", 0, 129), "coded size 0"),
    (struct.pack("<BH", 1, 8) + struct.pack("<II", 33, 129) + struct.pack("<BH", 1, 8) + struct.pack("<II", 33, 129),
     "bad extension record 1"),
    (struct.pack("<BH", 1, 20) + struct.pack("<II", 33, 129), "bad extension record 1"),
    (b"", "without extensions"),
    (b"\x01", "truncated extension record"),
])
def test_bad_extensions_are_refused(record, message):
    with pytest.raises(BitstreamError, match=message):
        container.read(_with_record(record))


def test_coded_size_must_fit_the_image():
    """Up to twice the image per side, from format version 4 (where the f8 tokens come from)."""
    with pytest.raises(BitstreamError, match="invalid coded size"):
        container.read(container.pack(dataclasses.replace(HEADER, coded_width=131, grid_width=9), b""))
    upscaled = container.pack(dataclasses.replace(HEADER, coded_width=130, grid_width=9), b"")
    assert container.read_header(upscaled).version == upscaled[4] == 4
    with pytest.raises(BitstreamError, match="grid size"):
        container.read(container.pack(dataclasses.replace(HEADER, grid_width=5), b""))


def test_cli_scale_budget_and_info(tmp_path, tiny_model_path, big_photo, capsys):
    Image.fromarray(big_photo).save(tmp_path / "p.png")
    model = ["--model", str(tiny_model_path)]
    assert main(["encode", str(tmp_path / "p.png"), "-o", str(tmp_path / "a.vqc"), "--level", "16", "--scale", "0.5",
                 "--granularity", "16", *model]) == 0
    assert "at 85x60" in capsys.readouterr().err
    assert main(["encode", str(tmp_path / "p.png"), "-o", str(tmp_path / "b.vqc"), "--max-bytes", "120", *model]) == 0
    assert (tmp_path / "b.vqc").stat().st_size <= 120
    assert main(["info", str(tmp_path / "a.vqc")]) == 0
    out = capsys.readouterr().out
    assert "coded at 85x60" in out and "version 2" in out
    assert main(["decode", str(tmp_path / "a.vqc"), "-o", str(tmp_path / "a.png"), *model]) == 0
    assert Image.open(tmp_path / "a.png").size == (170, 120)
    assert main(["encode", str(tmp_path / "p.png"), "-o", str(tmp_path / "c.vqc"), "--max-bytes", "5", *model]) == 1
    assert "no operating point fits 5 bytes" in capsys.readouterr().err
