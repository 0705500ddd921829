"""Loading official taming-transformers checkpoints and the registry, on tiny self-made files."""

import pytest
import torch
import yaml
from conftest import TAMING_DDCONFIG, tiny_model

from vqcodec import Codec, registry
from vqcodec.errors import WeightsError
from vqcodec.fileio import download, sha256_bytes, sha256_file
from vqcodec.taming_checkpoint import load_taming


def write_taming_checkpoint(root, n_embed=64, embed_dim=4):
    """The exact layout of taming's logs: checkpoints/last.ckpt (Lightning dict) + configs/model.yaml."""
    model = tiny_model("taming", levels=())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["loss.discriminator.main.0.weight"] = torch.zeros(2, 3, 4, 4)  # training-only keys are ignored
    (root / "checkpoints").mkdir(parents=True)
    (root / "configs").mkdir()
    torch.save({"state_dict": state, "global_step": 123, "epoch": 4, "pytorch-lightning_version": "1.0.8"},
               root / "checkpoints" / "last.ckpt")
    config = {"model": {"base_learning_rate": 4.5e-6, "target": "taming.models.vqgan.VQModel",
                        "params": {"embed_dim": embed_dim, "n_embed": n_embed, "ddconfig": TAMING_DDCONFIG,
                                   "lossconfig": {"target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator"}}}}
    (root / "configs" / "model.yaml").write_text(yaml.safe_dump(config))
    return model


def test_taming_layout_loads_strictly(tmp_path):
    original = write_taming_checkpoint(tmp_path / "vqgan_tiny")
    loaded = load_taming(tmp_path / "vqgan_tiny" / "checkpoints" / "last.ckpt")
    for k, v in original.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v)
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(loaded.model.encode_indices(x), original.encode_indices(x))


def test_taming_checkpoint_round_trips_through_codec(tmp_path, photo):
    write_taming_checkpoint(tmp_path / "vqgan_tiny")
    codec = Codec.from_pretrained(tmp_path / "vqgan_tiny" / "checkpoints" / "last.ckpt", device="cpu")
    assert codec.decode(codec.encode(photo).data).size == (57, 40)


def test_registered_taming_model_from_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VQCODEC_HOME", str(tmp_path / "home"))
    write_taming_checkpoint(tmp_path / "src")
    dest = tmp_path / "home" / "vqgan_imagenet_f16_1024"
    dest.mkdir(parents=True)
    (tmp_path / "src" / "checkpoints" / "last.ckpt").rename(dest / "last.ckpt")
    (tmp_path / "src" / "configs" / "model.yaml").rename(dest / "model.yaml")
    name, loaded = registry.load("vqgan_imagenet_f16_1024", download=False)
    assert name == "vqgan_imagenet_f16_1024" and loaded.model.config.backbone == "taming"


def test_offline_error_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("VQCODEC_HOME", str(tmp_path / "home"))
    with pytest.raises(WeightsError) as exc:
        registry.load("vqgan_imagenet_f16_16384", download=False)
    assert str(tmp_path / "home" / "vqgan_imagenet_f16_16384" / "last.ckpt") in str(exc.value)


def test_download_failure_is_a_weights_error(tmp_path, monkeypatch):
    monkeypatch.setenv("VQCODEC_HOME", str(tmp_path / "home"))
    spec = registry.ModelSpec(name="x", format="taming", filename="last.ckpt", sha256=None,
                              url="http://127.0.0.1:9/nothing-listens-here")
    with pytest.raises(WeightsError, match="place the file at"):
        registry._locate(spec, spec.filename, spec.url, None, download=True)


def test_download_is_verified_before_the_file_appears(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"weights")
    dest = tmp_path / "cache" / "w.bin"
    with pytest.raises(WeightsError, match="SHA-256"):
        download(source.as_uri(), dest, "0" * 64)
    assert list(dest.parent.iterdir()) == []  # no partial or unverified file left behind
    digest = sha256_bytes(b"weights")
    assert download(source.as_uri(), dest, digest) == digest == sha256_file(dest)


def test_weights_override_checked_against_sha(tmp_path, monkeypatch):
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(b"\0" * 64)
    monkeypatch.setitem(registry.REGISTRY, "fake", registry.ModelSpec("fake", "vqcodec", "fake.safetensors", "0" * 64))
    with pytest.raises(WeightsError, match="SHA-256"):
        registry.load("fake", weights=bogus)


def test_corrupt_vqcodec_weights(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage" * 10)
    with pytest.raises(WeightsError, match="safetensors"):
        registry.load(str(bad))


def test_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    root = tmp_path / "evil"
    write_taming_checkpoint(root)
    torch.save({"state_dict": {}, "callback": Evil()}, root / "checkpoints" / "last.ckpt")
    with pytest.raises(WeightsError, match="weights-only"):
        load_taming(root / "checkpoints" / "last.ckpt")
