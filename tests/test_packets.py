"""Packetized streams and lost-index restoration on a tiny model."""

import itertools

import numpy as np
import pytest
import torch
from conftest import noisy_gradient, skewed_priors, tiny_model
from PIL import Image

from vqcodec import Codec
from vqcodec.cli import main
from vqcodec.codec import container, payload
from vqcodec.codec.restore import restore_fixed, restore_neighbour, restore_transformer
from vqcodec.errors import VQCodecError, WeightsError
from vqcodec.evaluation.channel import decode_with_loss
from vqcodec.models.restorer import IndexRestorer, RestorerConfig
from vqcodec.weights import load_restorer, save_model, save_restorer

PACKETS = 6


def split_packets(data: bytes) -> tuple[bytes, list[bytes]]:
    """What a sender transmits: the header with its CRC, then each packet's bytes (packets are in order)."""
    stream = container.read(data)
    sizes = [container.PACKET_OVERHEAD + len(stream.packets[k]) for k in range(stream.header.packets)]
    offsets = list(itertools.accumulate(sizes, initial=len(data) - sum(sizes)))
    return data[: offsets[0]], [data[a:b] for a, b in itertools.pairwise(offsets)]


@pytest.fixture
def big_photo():
    return noisy_gradient(96, 130, noise=40, seed=3)


def test_packet_assignment_scatters_neighbours():
    for packets in (3, 5, 8, 10, 16, 32):
        layout = container.packet_assignment(20, 30, packets)
        assert (layout[:, 1:] != layout[:, :-1]).all() and (layout[1:] != layout[:-1]).all()
        counts = np.bincount(layout.ravel(), minlength=packets)
        assert counts.min() >= counts.max() - 20  # roughly balanced


@pytest.mark.parametrize("granularity", ["16", "adaptive"])
def test_each_packet_decodes_alone(codec, big_photo, granularity):
    """A packet carries its positions (with a granularity map: its tokens, anchor and copies)."""
    data = codec.encode(big_photo, level=16, packets=PACKETS, granularity=granularity, lam=0.0).data
    head, packets = split_packets(data)
    assert len(packets) == PACKETS
    entropy = codec.entropy.for_level(16)
    full = payload.read(container.read(data), entropy)
    assert full.known.all() and full.packets_lost == []
    layout = container.packet_assignment(*full.indices.shape, PACKETS)
    anchor = payload.anchors(container.read_header(data))
    assert (anchor is None) == (granularity == "16")
    if anchor is not None:
        assert (anchor != np.arange(anchor.size).reshape(anchor.shape)).any()  # some tokens are coarse
        layout = layout.reshape(-1)[anchor]
    for k, packet in enumerate(packets):
        grid = payload.read(container.read(head + packet), entropy)
        assert grid.packets_lost == [i for i in range(PACKETS) if i != k]
        assert np.array_equal(grid.known, layout == k)
        assert np.array_equal(grid.indices[grid.known], full.indices[grid.known])


def test_any_subset_of_packets_decodes(codec, big_photo):
    data = codec.encode(big_photo, level=16, packets=4, granularity="16").data
    head, packets = split_packets(data)
    for r in range(len(packets) + 1):
        for subset in itertools.combinations(range(len(packets)), r):
            image, report = codec.decode_with_report(head + b"".join(packets[k] for k in subset), restore="neighbour")
            assert image.size == (130, 96)
            assert sorted(set(range(4)) - set(subset)) == report.packets_lost
            assert (report.indices_lost > 0) == (r < 4)


def test_lossless_packetized_decode_equals_plain(codec, big_photo):
    plain = codec.decode(codec.encode(big_photo, level=16).data)
    packetized = codec.decode(codec.encode(big_photo, level=16, packets=PACKETS).data)
    assert np.array_equal(np.asarray(plain), np.asarray(packetized))


def test_corrupted_packet_is_lost_and_later_packets_survive(codec, big_photo):
    data = codec.encode(big_photo, level=16, packets=PACKETS).data
    head, packets = split_packets(data)
    damaged = bytearray(packets[2])
    damaged[len(damaged) // 2] ^= 0x10
    stream = container.read(head + b"".join(packets[:2]) + bytes(damaged) + b"".join(packets[3:]))
    assert stream.lost_packets == [2] and stream.damaged_bytes == len(damaged)
    # a packet dropped from the middle, garbage in between, duplicates: all tolerated
    stream = container.read(head + packets[0] + b"\xa5\x5agarbage" + packets[4] + packets[4] + packets[5])
    assert sorted(stream.packets) == [0, 4, 5]
    # a packet of a file with another header is refused by its CRC (which starts from the header's CRC)
    other = codec.encode(big_photo[:, :-16].copy(), level=16, packets=PACKETS).data
    assert container.read(head + split_packets(other)[1][1]).packets == {}


def test_corrupted_header_is_an_error(codec, big_photo):
    data = bytearray(codec.encode(big_photo, level=16, packets=PACKETS).data)
    data[12] ^= 1
    with pytest.raises(VQCodecError, match="header"):
        codec.decode(bytes(data))


def test_packet_bytes_bounds_every_payload(codec, big_photo):
    encoded = codec.encode(big_photo, level=64, packet_bytes=6, granularity="16")
    data = encoded.data
    assert encoded.header == container.read_header(data)
    stream = container.read(data)
    assert stream.header.packets > 1
    assert max(len(p) for p in stream.packets.values()) <= 6
    assert np.asarray(codec.decode(data)).shape == (96, 130, 3)


def test_restoration_methods_fill_only_lost_positions():
    torch.manual_seed(0)
    codebook = torch.nn.functional.normalize(torch.randn(16, 4), dim=1)
    restorer = IndexRestorer(RestorerConfig(code_dim=4, width=16, depth=2, heads=2)).eval()
    indices = torch.randint(0, 16, (5, 7))
    known = torch.rand(5, 7) > 0.4
    garbage = torch.where(known, indices, torch.full_like(indices, 15))
    for filled in (
        restore_transformer(restorer, garbage, known, codebook, steps=3),
        restore_transformer(restorer, garbage, known, codebook, steps=1),
        restore_neighbour(garbage, known, 0),
        restore_fixed(garbage, known, 3),
    ):
        assert filled.shape == indices.shape and filled.dtype == torch.long
        assert torch.equal(filled[known], indices[known])
        assert int(filled.min()) >= 0 and int(filled.max()) < 16
    nothing = torch.zeros(5, 7, dtype=torch.bool)
    assert restore_neighbour(garbage, nothing, 3).eq(3).all()
    assert restore_transformer(restorer, garbage, nothing, codebook).shape == (5, 7)
    # the neighbour baseline copies the nearest survivor
    grid = torch.tensor([[1, 2, 3]])
    assert restore_neighbour(grid, torch.tensor([[True, False, False]]), 0).tolist() == [[1, 1, 1]]


def test_restorer_is_bound_to_its_model(tmp_path):
    restorer = IndexRestorer(RestorerConfig(code_dim=4, width=16, depth=1, heads=2))
    path = tmp_path / "r.safetensors"
    save_restorer(path, restorer, b"\x01" * 8)
    assert isinstance(load_restorer(path, b"\x01" * 8), IndexRestorer)
    with pytest.raises(WeightsError, match="trained for model weights"):
        load_restorer(path, b"\x02" * 8)


def test_codec_uses_the_restorer_beside_the_model(tmp_path, big_photo):
    model = tiny_model()
    path = tmp_path / "m.safetensors"
    save_model(path, model, skewed_priors(model))
    plain = Codec.from_pretrained(path, device="cpu")
    assert plain.restorer is None
    save_restorer(tmp_path / "m.restorer.safetensors", IndexRestorer(RestorerConfig(code_dim=4, width=16, depth=1, heads=2)),
                  plain.fingerprint)
    codec = Codec.from_pretrained(path, device="cpu")
    assert codec.restorer is not None
    data = codec.encode(big_photo, level=16, packets=PACKETS, granularity="16").data
    image, report = decode_with_loss(codec, data, 0.34, seed=2)
    assert report.restored_with == "transformer" and len(report.packets_lost) == 2 and image.size == (130, 96)
    again, _ = decode_with_loss(codec, data, 0.34, seed=2)
    assert np.array_equal(np.asarray(image), np.asarray(again))
    plain = codec.encode(big_photo, level=16, granularity="16").data
    _, report = decode_with_loss(codec, plain, 0.2, unit="index", seed=1)
    assert report.indices_lost == round(0.2 * report.indices) and report.packets == 0
    with pytest.raises(VQCodecError, match="packetized"):
        decode_with_loss(codec, plain, 0.2)
    with pytest.raises(VQCodecError, match="does not match"):
        codec.decode_with_report(plain, lost=np.zeros((2, 2), dtype=bool))


def test_cli_packets_info_and_simulated_loss(tmp_path, tiny_model_path, big_photo, capsys):
    Image.fromarray(big_photo).save(tmp_path / "p.png")
    vqc, out = tmp_path / "p.vqc", tmp_path / "p.out.png"
    assert main(["encode", str(tmp_path / "p.png"), "-o", str(vqc), "--model", str(tiny_model_path), "--level", "16",
                 "--packets", "8", "--granularity", "16"]) == 0
    assert main(["info", str(vqc)]) == 0
    assert "packets      8 of 8 found (lost: none)" in capsys.readouterr().out
    assert main(["decode", str(vqc), "-o", str(out), "--model", str(tiny_model_path), "--simulate-loss", "0.25",
                 "--seed", "4", "--restore", "neighbour"]) == 0
    err = capsys.readouterr().err
    assert "6/8 packets" in err and "restored (neighbour)" in err
    assert Image.open(out).size == (130, 96)
    assert main(["decode", str(vqc), "-o", str(out), "--model", str(tiny_model_path), "--simulate-loss", "0.25",
                 "--restore", "transformer", "--force"]) == 1
    assert "no restorer" in capsys.readouterr().err
