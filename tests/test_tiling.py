"""Tiled encoding and decoding (vqcodec.codec.tiling) on a tiny model, with tiles of a few tokens."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from conftest import noisy_gradient, tiny_model
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from vqcodec.codec.image_io import image_to_tensor
from vqcodec.codec.runner import ModelRunner
from vqcodec.codec.tiling import Tiling, spans
from vqcodec.metrics import psnr

WHOLE = Tiling(whole=1 << 32)
SMALL = Tiling(whole=9, encode_tile=3, encode_halo=2, encode_head_halo=3, decode_tile=3, decode_halo=1)
# halos wider than the test images: every tile sees the whole image, so tiling changes rounding only
FULL = Tiling(whole=9, encode_tile=3, encode_halo=64, encode_head_halo=64, decode_tile=128, decode_halo=64)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def runners(model, *tilings: Tiling) -> list[ModelRunner]:
    return [ModelRunner(model, "cpu", tiling=tiling) for tiling in tilings]


def image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    return image_to_tensor(noisy_gradient(height, width, 40, seed))


def test_spans_cover_the_grid_once():
    assert spans(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert spans(3, 3) == [(0, 3)]


def test_grid_within_one_tile_takes_the_whole_image_path(model):
    """Small images keep today's indices and pixels exactly (the golden files rely on it)."""
    whole, tiled = runners(model, WHOLE, SMALL)
    x = image(45, 40)  # a 3×3 grid: one tile
    indices = whole.encode_levels(x, [64, 16])
    assert all(torch.equal(indices[k], v) for k, v in tiled.encode_levels(x, [64, 16]).items())
    assert torch.equal(whole.decode_indices(indices[16], 16), tiled.decode_indices(indices[16], 16))


@pytest.mark.parametrize("height, width", [(150, 230), (97, 161), (33, 200)])
def test_many_tiles_of_odd_sizes_match_the_whole_image(model, height, width):
    """With halos covering the image, tiles compute what the whole image computes, GroupNorm
    statistics included; with small halos the decode stays close."""
    whole, full, small = runners(model, WHOLE, FULL, SMALL)
    x = image(height, width)
    expected = whole.encode_levels(x, [64, 16])
    for level, got in full.encode_levels(x, [64, 16]).items():
        assert got.shape == expected[level].shape == (1, -(-height // 16), -(-width // 16))
        assert (got == expected[level]).float().mean() >= 0.99
    reference = whole.decode_indices(expected[16], 16)
    assert (full.decode_indices(expected[16], 16) - reference).abs().max() < 1e-4
    decoded = small.decode_indices(expected[16], 16)
    assert decoded.shape == reference.shape
    assert float(psnr(decoded, reference)) > 35


@pytest.mark.parametrize("height, width", [(40, 45), (70, 110)])
def test_uint8_images_give_the_indices_of_float_ones(model, height, width):
    """The codec hands the runner uint8 images (converted a tile at a time): same indices, tiled or not."""
    from vqcodec.codec.image_io import image_to_uint8_tensor

    photo = noisy_gradient(height, width, 40, 3)
    for runner in runners(model, WHOLE, SMALL):
        assert torch.equal(runner.encode_indices(image_to_uint8_tensor(photo), 16), runner.encode_indices(image_to_tensor(photo), 16))


def test_tile_border_next_to_the_padding(model):
    """A last tile one token wide holding one real pixel column and row: the rest is edge padding."""
    whole, full = runners(model, WHOLE, FULL)
    x = image(3 * 16 + 1, 6 * 16 + 1)  # grid 4×7 with tiles of 3: last tiles are one token
    expected = whole.encode_levels(x, [64])[64]
    assert (full.encode_levels(x, [64])[64] == expected).float().mean() >= 0.99


def test_codec_round_trip_in_tiles(codec):
    """Through the Codec: tiled files decode to the original size, bytes and pixels like untiled ones."""
    photo = noisy_gradient(90, 140, 30, 1)
    codec.runner.tiling = WHOLE
    untiled = codec.encode(photo, level=16)
    codec.runner.tiling = FULL
    tiled = codec.encode(photo, level=16)
    assert tiled.header.grid_width == 9
    codec.runner.tiling = SMALL
    decoded = np.asarray(codec.decode(tiled.data))
    assert decoded.shape == photo.shape
    codec.runner.tiling = WHOLE
    assert float(np.mean(np.asarray(codec.decode(untiled.data)) == decoded)) > 0.5


def test_progress_bars_count_the_tiles_on_a_terminal(model, monkeypatch, capsys):
    x = image(70, 110)  # a 5×7 grid: 2×3 tiles of 3
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    runner = ModelRunner(model, "cpu", tiling=SMALL, progress=True)
    runner.decode_indices(runner.encode_indices(x, 16), 16)
    err = capsys.readouterr().err
    assert "encoding" in err and "/12 " in err  # the trunk's tiles, then the head's
    assert "decoding" in err and "/6 " in err
    ModelRunner(model, "cpu", tiling=SMALL).encode_indices(x, 16)
    assert capsys.readouterr().err == ""


def test_tiled_bytes_do_not_depend_on_threads(codec):
    photo = noisy_gradient(70, 110, 30, 2)
    codec.runner.tiling = SMALL
    files, pixels = [], []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        encoded = codec.encode(photo, level=16)
        files.append(encoded.data)
        pixels.append(np.asarray(codec.decode(encoded.data)))
    assert files[0] == files[1]
    assert np.array_equal(pixels[0], pixels[1])


class LargestAllocation(TorchDispatchMode):
    """The largest tensor any operation allocates (outputs that share no input's storage)."""

    def __init__(self, ignore: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.ignore = ignore  # shapes of the buffers that must grow with the image
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs and tuple(t.shape) not in self.ignore:
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("step", ["encode", "decode"])
def test_memory_is_bounded_by_the_tile(model, step):
    """The largest tensor allocated stays the same when the image grows (bar the output buffer and
    the encoder's 1/8-resolution feature map), and is below what the whole-image path allocates."""
    tiling = Tiling(whole=4, encode_tile=2, encode_halo=1, encode_head_halo=2, decode_tile=2, decode_halo=1)
    tiled, whole = runners(model, tiling, WHOLE)
    largest = {}
    for side in (6, 8):  # both have interior tiles
        x = image(16 * side, 16 * side)
        indices = whole.encode_levels(x, [16])[16]
        for name, runner in (("tiled", tiled), ("whole", whole)):
            buffers = ((1, 3, 16 * side, 16 * side), (1, model.config.taef2_channels, 2 * side, 2 * side))
            with LargestAllocation(ignore=buffers) as counter:
                runner.encode_levels(x, [16]) if step == "encode" else runner.decode_indices(indices, 16)
            largest[name, side] = counter.largest
    assert largest["tiled", 6] == largest["tiled", 8]
    assert largest["tiled", 8] < largest["whole", 8] / 2


def test_huge_grids_are_restored_in_windows():
    """Attention is quadratic in the grid: large grids are filled a window at a time, each window
    seeing its core and halo only, and windows with nothing lost are skipped."""
    from vqcodec.codec.restore import restore_transformer
    from vqcodec.models.restorer import IndexRestorer, RestorerConfig

    torch.manual_seed(0)
    codebook = torch.nn.functional.normalize(torch.randn(16, 4), dim=1)
    restorer = IndexRestorer(RestorerConfig(code_dim=4, width=16, depth=2, heads=2)).eval()
    seen = []
    restorer.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape[1:])))
    indices = torch.randint(0, 16, (11, 14))
    known = torch.ones(11, 14, dtype=torch.bool)
    known[5:8, 9:12] = False  # lost within the window of rows 4..7, columns 8..11
    windowed = restore_transformer(restorer, indices, known, codebook, whole=16, window=4, halo=2)
    assert seen == [(8, 8)]  # one window: its core of 4 and 2 of halo on each side
    assert torch.equal(windowed[known], indices[known])
    alone = restore_transformer(restorer, indices[2:10, 6:14], known[2:10, 6:14], codebook, whole=64)
    assert torch.equal(windowed[2:10, 6:14], alone)
    known = torch.rand(11, 14) > 0.5
    windowed = restore_transformer(restorer, indices, known, codebook, whole=16, window=4, halo=2)
    assert max(h * w for h, w in seen[2:]) <= 64 and len(seen) == 2 + 12
    assert torch.equal(windowed[known], indices[known]) and int(windowed.max()) < 16



def test_cli_round_trip_of_an_image_too_large_to_run_whole(tmp_path, tiny_model_path):
    """The default command on a photo whose grid (51×50 tokens) exceeds what runs whole: encoded
    and decoded in default tiles, back at its own size, and close to the whole-image decode."""
    from PIL import Image

    from vqcodec import Codec
    from vqcodec.cli import main
    from vqcodec.codec.tiling import WHOLE_TOKENS

    photo = noisy_gradient(810, 800, 30, 5)
    assert 51 * 50 > WHOLE_TOKENS
    Image.fromarray(photo).save(tmp_path / "big.png")
    model = ["--model", str(tiny_model_path)]
    assert main(["encode", str(tmp_path / "big.png"), "-o", str(tmp_path / "big.vqc"), "--level", "16", "-q", *model]) == 0
    assert main(["decode", str(tmp_path / "big.vqc"), "-o", str(tmp_path / "out.png"), "-q", *model]) == 0
    tiled = np.asarray(Image.open(tmp_path / "out.png"), dtype=np.float64)
    assert tiled.shape == photo.shape
    codec = Codec.from_pretrained(tiny_model_path, device="cpu")
    codec.runner.tiling = WHOLE
    whole = np.asarray(codec.decode((tmp_path / "big.vqc").read_bytes()), dtype=np.float64)
    assert 10 * np.log10(255**2 / np.mean((tiled - whole) ** 2)) > 40
