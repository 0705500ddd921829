"""The training loop and level building on a tiny model and a few generated photos."""

import numpy as np
import pytest
import torch
from conftest import tiny_config
from PIL import Image

from vqcodec import Codec
from vqcodec.metrics import squeezenet_backbone_path
from vqcodec.training.levels import index_counts, kmeans_codebook, priors_from_counts
from vqcodec.training.trainer import TrainConfig, load_checkpoint_model, train
from vqcodec.weights import save_model


@pytest.fixture
def photo_dir(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "train"
    folder.mkdir()
    for i in range(4):
        yy, xx = np.mgrid[0:48, 0:56]
        img = np.stack([xx * (i + 2), yy * 3, (xx + yy) * (i + 1)], -1) % 256 + rng.integers(0, 20, (48, 56, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def test_train_resume_export_and_levels(tmp_path, photo_dir):
    try:
        squeezenet_backbone_path()
    except FileNotFoundError:
        pytest.skip("LPIPS-Squeeze backbone (../shared/weights) not present")
    cfg = TrainConfig(data=str(photo_dir), out=str(tmp_path / "run"), steps=4, batch_size=2, crop=32,
                      restart_every=2, checkpoint_every=2, sample_every=2, kmeans_samples=64)
    model_cfg = tiny_config()
    model_cfg.l2_normalize = True
    ckpt = train(cfg, model_cfg)
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 4 and (tmp_path / "run" / "sample_000002.png").exists()
    first = load_checkpoint_model(ckpt)
    cfg.steps = 6
    train(cfg, model_cfg)
    assert torch.load(ckpt, weights_only=True)["step"] == 6
    model = load_checkpoint_model(ckpt)
    assert any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(), model.state_dict().values()))

    batches = [torch.rand(1, 3, 32, 48) for _ in range(3)]
    usage = index_counts(model, batches, [64])[64]
    model.add_level(kmeans_codebook(model.codebook(), 8, usage))
    counts = index_counts(model, batches, model.levels)
    assert int(counts[8].sum()) == 3 * 2 * 3
    path = tmp_path / "m.safetensors"
    save_model(path, model, priors_from_counts(counts))
    codec = Codec.from_pretrained(path, device="cpu")
    assert codec.levels == [64, 8]
    assert codec.decode(codec.encode(np.zeros((20, 30, 3), np.uint8), level=8)).size == (30, 20)
