import numpy as np
import pytest
import torch
from conftest import noisy_gradient, skewed_priors, tiny_model

from vqcodec import Codec
from vqcodec.codec import container, payload
from vqcodec.errors import BitstreamError, ModelMismatchError, VQCodecError
from vqcodec.weights import LoadedModel, fingerprint, load_model, save_model


@pytest.mark.parametrize("backbone", ["taef2", "taming"])
def test_indices_round_trip_is_exact(backbone):
    model = tiny_model(backbone)
    x = torch.rand(2, 3, 48, 64)
    for level in model.levels:
        idx = model.encode_indices(x, level)
        assert idx.shape == (2, 3, 4) and idx.dtype == torch.long
        assert 0 <= int(idx.min()) and int(idx.max()) < level
        codes = model.indices_to_codes(idx, level)
        assert torch.equal(model.nearest_code(codes, model.codebook(level)), idx)


@pytest.mark.parametrize("size", [(1, 1), (16, 16), (65, 257), (257, 65), (17, 33)])
def test_any_size_round_trip(codec, size, monkeypatch):
    """Odd sizes keep their content in place: the network sees the image edge-padded on the right and
    bottom, and the decoded image is the top-left of the network's output. (The tiny random model maps
    most content to one code, so the padding is checked where the network receives it.)"""
    h, w = size
    img = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    padded = np.pad(img, ((0, -h % codec.factor), (0, -w % codec.factor), (0, 0)), mode="edge")
    calls = []
    encode_features = codec.model.encode_features
    monkeypatch.setattr(codec.model, "encode_features", lambda x: calls.append(x) or encode_features(x))
    for level in codec.levels:
        data = codec.encode(img, level=level).data
        header = container.read_header(data)
        assert (header.width, header.height, header.level) == (w, h, level)
        seen = calls.pop()
        assert torch.equal(seen, torch.from_numpy(padded).permute(2, 0, 1)[None].float() / 255), "padding not at the right/bottom edge"
        indices = torch.from_numpy(payload.read(container.read(data), codec.entropy.for_level(level)).indices)[None]
        out = codec.decode(data)
        assert out.size == (w, h) and out.mode == "RGB"
        full = codec.decode_indices(indices, level)[0, :, :h, :w].permute(1, 2, 0).numpy()
        assert np.array_equal(np.asarray(out), (full * 255).round().clip(0, 255).astype(np.uint8)), "crop not at the top-left"


def test_bitstream_carries_exactly_the_indices(codec, photo):
    data = codec.encode(photo, level=16).data
    header, payload = container.unpack(data)
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
    indices = codec.encode_indices(x, 16)
    expected = codec.decode_indices(indices, 16)[0, :, :40, :57]
    decoded = torch.from_numpy(np.asarray(codec.decode(data))).permute(2, 0, 1).float() / 255
    assert torch.allclose(decoded, expected, atol=1 / 255 + 1e-6)


def test_encoding_is_deterministic(codec, photo):
    assert codec.encode(photo, level=16).data == codec.encode(photo, level=16).data


def test_static_prior_beats_uniform_on_matching_data(codec):
    from vqcodec.entropy import StaticPrior, encode_symbols

    prior = codec.entropy.for_level(64).prior
    symbols = np.random.default_rng(0).choice(64, 1000, p=prior.probabilities())

    assert len(encode_symbols(symbols, prior)) < len(encode_symbols(symbols, StaticPrior.uniform(64)))


def test_unknown_level_is_a_clear_error(codec, photo):
    with pytest.raises(VQCodecError, match="levels"):
        codec.encode(photo, level=5)


def test_other_model_is_rejected(codec, photo, tmp_path):
    data = codec.encode(photo).data
    other = tiny_model(seed=1)
    path = tmp_path / "other.safetensors"
    save_model(path, other, skewed_priors(other))
    with pytest.raises(ModelMismatchError, match="different weights"):
        Codec.from_pretrained(path, device="cpu").decode(data)
    renamed = LoadedModel(codec.model, {}, codec.fingerprint)
    with pytest.raises(ModelMismatchError, match="encoded with model"):
        Codec(renamed, "someone-else", device="cpu").decode(data)


def test_corrupt_and_truncated_files(codec, photo):
    data = codec.encode(photo).data
    with pytest.raises(BitstreamError):
        codec.decode(data[:-3])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    with pytest.raises(BitstreamError):
        codec.decode(bytes(flipped))


def test_weights_round_trip_and_fingerprint(tiny_model_path):
    loaded = load_model(tiny_model_path)
    again = load_model(tiny_model_path)
    assert loaded.fingerprint == again.fingerprint and len(loaded.fingerprint) == 8
    assert sorted(loaded.priors) == [4, 16, 64]
    assert loaded.model.levels == [64, 16, 4]
    tensors = {"a": torch.zeros(2)}
    assert fingerprint(tensors) != fingerprint({"a": torch.ones(2)})


def test_level_overrides_change_decoding(tmp_path):
    model = tiny_model(levels=())
    base = model.codebook()[:8].clone()
    override = {"post_quant_conv.bias": model.post_quant_conv.bias.detach() + 1.0}
    model.add_level(base, override)
    path = tmp_path / "m.safetensors"
    save_model(path, model)
    loaded = load_model(path).model
    idx = torch.zeros(1, 2, 2, dtype=torch.long)
    plain = loaded.decode_latent(loaded.indices_to_codes(idx, 8))
    tuned = loaded.decode_indices(idx, 8)
    assert not torch.allclose(plain, tuned)
    assert torch.equal(loaded.post_quant_conv.bias, model.post_quant_conv.bias.half().float())


def test_level_codebooks_follow_the_model_to_its_device():
    """Level tables are plain tensors, not buffers; a model moved to a GPU must still find them there."""
    model = tiny_model().to("meta")  # any device other than the CPU shows it, with no GPU here
    for level in model.levels:
        assert model.codebook(level).device.type == "meta"


@pytest.mark.parametrize("granularity", ["16", "adaptive"])
def test_batches_of_mixed_sizes_give_the_files_and_pictures_of_single_calls(codec, granularity):
    """Images of two sizes in batches of two: each file is the bytes encode gives alone, and each
    picture the pixels decode gives alone (the network runs per size group)."""
    photos = [noisy_gradient(50, 70, 30, 1), noisy_gradient(33, 47, 30, 2), noisy_gradient(50, 70, 30, 3),
              noisy_gradient(50, 70, 30, 4)]
    files = codec.encode_batch(photos, level=16, granularity=granularity, batch_size=2)
    assert [f.data for f in files] == [codec.encode(p, level=16, granularity=granularity).data for p in photos]
    decoded = codec.decode_batch([f.data for f in files], batch_size=2)
    for got, file in zip(decoded, files):
        assert np.array_equal(np.asarray(got.image), np.asarray(codec.decode(file.data)))
        assert got.report.indices_lost == 0
    assert [d.image.size for d in decoded] == [(70, 50), (47, 33), (70, 50), (70, 50)]
    with pytest.raises(VQCodecError, match="batch_size"):
        codec.decode_batch([files[0].data], batch_size=0)
