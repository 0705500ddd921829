"""Content-adaptive granularity: the map, its coding, the rate–distortion choice, and files that use it."""

import numpy as np
import pytest
import torch
from conftest import noisy_gradient
from PIL import Image

from vqcodec.cli import main
from vqcodec.codec import container, granularity, payload
from vqcodec.codec.tiling import Tiling
from vqcodec.entropy.context import STAGE_OF_PHASE, stage_map
from vqcodec.errors import BitstreamError
from vqcodec.testing.fuzz import tiny_codec


@pytest.fixture(scope="module")
def codec():
    """The tiny model with its context model (and a pixel limit that fits these photos)."""
    return tiny_codec(max_pixels=1 << 18)


@pytest.fixture
def photo():
    return noisy_gradient(150, 210, noise=25, seed=7)


def random_map(rng, shape):
    gmap = rng.integers(0, granularity.SYMBOLS, shape).astype(np.uint8)
    gmap[rng.random(shape) < 0.3] = 0
    return gmap


@pytest.mark.parametrize("grid", [(1, 1), (3, 5), (4, 4), (9, 14), (17, 2), (40, 33)])
def test_map_round_trips_and_is_never_empty(grid):
    rng = np.random.default_rng(grid[0] * 100 + grid[1])
    for _ in range(5):
        gmap = random_map(rng, granularity.block_shape(*grid))
        data = granularity.encode_map(gmap)
        assert data and np.array_equal(granularity.decode_map(data, *grid), gmap)


def test_map_bits_follow_its_content():
    """Adaptive counts: a uniform map costs little, a random one about its entropy."""
    rng = np.random.default_rng(0)
    shape = (24, 32)
    flat = np.full(shape, granularity.WHOLE, dtype=np.uint8)
    assert len(granularity.encode_map(flat)) <= 8
    noisy = random_map(rng, shape)
    assert len(granularity.encode_map(noisy)) > 10 * len(granularity.encode_map(flat))


@pytest.mark.parametrize("data", [b"\xff" * 7, b"\x00", bytes(range(40)), b"\x01\x02\x03"])
def test_any_map_bytes_decode_to_a_valid_map_or_a_clear_error(data):
    try:
        gmap = granularity.decode_map(data, 13, 9)
    except BitstreamError:
        return
    assert gmap.shape == (4, 3) and gmap.max() < granularity.SYMBOLS


def test_tokens_cover_their_squares_and_anchors_come_first():
    """Every position copies an anchor at the top left of its square, and the context model codes
    that anchor in an earlier stage (what lets it decode copies before it needs them)."""
    rng = np.random.default_rng(3)
    h, w = 22, 31
    gmap = random_map(rng, granularity.block_shape(h, w))
    g = granularity.granularity_of(gmap, h, w)
    anchor = granularity.anchors(gmap, h, w)
    rows, cols = np.divmod(anchor, w)
    r, c = np.mgrid[0:h, 0:w]
    assert ((rows == r // g * g) & (cols == c // g * g)).all()
    stages = stage_map(h, w)
    copies = anchor != np.arange(h * w).reshape(h, w)
    assert (stages.reshape(-1)[anchor[copies]] < stages[copies]).all()
    assert STAGE_OF_PHASE[0, 0] == 0
    shares = granularity.shares(gmap, h, w)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares[4] == pytest.approx((g == 4).mean())


def test_choice_merges_where_it_pays():
    rng = np.random.default_rng(1)
    h, w = 12, 16
    errors = {g: rng.random((h, w)) for g in granularity.GRANULARITIES}
    bits = {g: np.full((h, w), 8.0) for g in granularity.GRANULARITIES}
    errors[4][:4, :4] = 0  # the first block is best as one token at any λ
    errors[2][4:, :] = 100  # coarse tokens are far worse below
    errors[4][4:, :] = 100
    at_zero = granularity.choose(errors, bits, 0.0)
    assert at_zero[0, 0] == granularity.WHOLE and (at_zero[1:] == 0).all()
    tokens = []
    for lam in (0.0, 0.01, 0.1, 1.0, 10.0, 1e9):
        g = granularity.granularity_of(granularity.choose(errors, bits, lam), h, w)
        tokens.append(int((g == 1).sum() + (g == 2).sum() / 4 + (g == 4).sum() / 16))
    assert tokens == sorted(tokens, reverse=True) and tokens[-1] == h * w // 16


@pytest.mark.parametrize("kind", ["static", "context"])
def test_entropy_models_code_only_anchors(codec, kind):
    rng = np.random.default_rng(5)
    h, w = 13, 18
    gmap = random_map(rng, granularity.block_shape(h, w))
    anchor = granularity.anchors(gmap, h, w)
    grid = granularity.spread(rng.integers(0, 16, (h, w)), anchor)
    model = codec.entropy.for_level(16, kind)
    (mixed,) = model.encode(grid, anchor=anchor)
    (full,) = model.encode(grid)
    assert len(mixed) < len(full)
    decoded, ok = model.decode([mixed], np.zeros((h, w), dtype=np.int64), anchor)
    assert ok == [True] and np.array_equal(decoded, grid)
    parts = container.packet_assignment(h, w, 4).reshape(-1)[anchor]
    payloads = model.encode(grid, parts, 4, anchor)
    decoded, ok = model.decode([payloads[0], None, payloads[2], payloads[3]], parts, anchor)
    assert ok == [True, False, True, True]
    assert np.array_equal(decoded[parts != 1], grid[parts != 1]) and (decoded[parts == 1] == 0).all()


def test_adaptive_file_decodes_its_mixed_grid(codec, photo):
    adaptive = codec.encode(photo, level=16, granularity="adaptive", lam=0.0)
    header = adaptive.header
    assert header.version == 4 and header.granularity_map
    stream = container.read(adaptive.data)
    grid = payload.read(stream, codec.check_compatible(header))
    gmap = granularity.decode_map(header.granularity_map, header.grid_height, header.grid_width)
    assert np.array_equal(grid.indices, granularity.spread(grid.indices, grid.anchor))
    assert (granularity.granularity_of(gmap, *grid.indices.shape) > 1).any()
    expected = codec.decode_indices(torch.from_numpy(grid.indices)[None], 16)[0, :, :150, :210]
    decoded = np.asarray(codec.decode(adaptive.data))
    assert np.array_equal(decoded, (expected.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    fixed = codec.encode(photo, level=16, granularity="16")
    assert fixed.header.version <= 3 and not fixed.header.granularity_map
    coarse = codec.encode(photo, level=16, granularity="adaptive", lam=1e6)
    assert len(coarse.data) < len(adaptive.data) < len(fixed.data) + len(header.granularity_map) + 4


def test_token_errors_are_the_decodes_squared_errors(codec, photo):
    coded = torch.from_numpy(np.ascontiguousarray(photo[:64, :96])).permute(2, 0, 1)[None]
    grids = codec.runner.encode_levels(coded, [16], granular=True)[16][0]
    errors = codec.runner.token_errors(coded[0], grids, 16)
    assert errors.shape == (3, 4, 6)
    x = coded[0].float() / 255
    for i, grid in enumerate(grids):  # granularities 1, 2, 4
        decoded = codec.decode_indices(grid[None], 16)[0]
        per_position = ((decoded - x) ** 2).mean(0).reshape(4, 16, 6, 16).sum((1, 3))
        assert torch.allclose(errors[i].float(), per_position, atol=1e-4)
    assert torch.equal(grids[1], grids[1][::2, ::2].repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert torch.equal(grids[2], grids[2][::4, ::4].repeat_interleave(4, 0).repeat_interleave(4, 1)[:4, :6])


def test_token_errors_from_tile_rows_are_those_of_the_whole_decode(codec, photo):
    """Through the tiled decoder, errors are summed from each row of tiles as it is finished: they
    equal the errors of the full decode, padding at both edges included."""
    codec.runner.tiling = Tiling(whole=4, encode_tile=2, encode_halo=1, encode_head_halo=2, decode_tile=2, decode_halo=1)
    coded = torch.from_numpy(np.ascontiguousarray(photo[:75, :90])).permute(2, 0, 1)[None]  # 5x6 grid, padded
    grids = codec.runner.encode_levels(coded, [16], granular=True)[16][0]
    errors = codec.runner.token_errors(coded[0], grids, 16)
    x = torch.nn.functional.pad(coded[0].double() / 255, (0, 6, 0, 5))
    for i, grid in enumerate(grids):
        decoded = codec.runner.decode_indices(grid[None], 16)[0].double()
        per_pixel = ((decoded - x) ** 2).mean(0)
        per_pixel[75:], per_pixel[:, 90:] = 0, 0
        assert torch.allclose(errors[i], per_pixel.reshape(5, 16, 6, 16).sum((1, 3)), rtol=1e-5, atol=1e-7)

def test_lost_anchor_loses_its_copies_and_restoration_keeps_squares(codec, photo):
    data = codec.encode(photo, level=16, granularity="adaptive", lam=0.0, packets=5).data
    stream = container.read(data)
    del stream.packets[1]
    image, report = codec.decode_with_report(stream, restore="neighbour")
    anchor = payload.anchors(stream.header)
    parts = container.packet_assignment(stream.header.grid_height, stream.header.grid_width, 5).reshape(-1)[anchor]
    assert report.packets_lost == [1] and report.indices_lost == int((parts == 1).sum())
    assert image.size == (210, 150)


def test_upscaled_coding_and_cli(tmp_path, tiny_model_path, photo, capsys):
    Image.fromarray(photo).save(tmp_path / "p.png")
    model = ["--model", str(tiny_model_path)]
    assert main(["encode", str(tmp_path / "p.png"), "-o", str(tmp_path / "a.vqc"), "--level", "16", "--scale", "1.5",
                 *model]) == 0
    assert "at 315x225" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "a.vqc")]) == 0
    out = capsys.readouterr().out
    assert "version 4" in out and "granularity  f16 " in out and "f64" in out and "map" in out
    assert main(["decode", str(tmp_path / "a.vqc"), "-o", str(tmp_path / "a.png"), *model]) == 0
    assert Image.open(tmp_path / "a.png").size == (210, 150)
    assert main(["encode", str(tmp_path / "p.png"), "-o", str(tmp_path / "b.vqc"), "--granularity", "16", *model]) == 0
    assert main(["info", str(tmp_path / "b.vqc")]) == 0
    assert "granularity  f16\n" in capsys.readouterr().out
    assert main(["encode", str(tmp_path / "p.png"), "-o", str(tmp_path / "c.vqc"), "--scale", "2.5", *model]) == 1
    assert "scale must be in (0, 2]" in capsys.readouterr().err
