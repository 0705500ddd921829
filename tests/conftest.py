"""Shared fixtures: tiny random-init models written to temporary files (never the shipped model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vqcodec.models import VQGAN, ModelConfig
from vqcodec.training.levels import priors_from_counts
from vqcodec.weights import save_model

TAMING_DDCONFIG = {
    "double_z": False, "z_channels": 32, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 32,
    "ch_mult": [1, 1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0,
}


def tiny_config(backbone: str = "taef2", name: str = "tiny") -> ModelConfig:
    if backbone == "taming":
        return ModelConfig(name=name, backbone="taming", n_embed=64, embed_dim=4, ddconfig=dict(TAMING_DDCONFIG))
    return ModelConfig(name=name, backbone="taef2", n_embed=64, embed_dim=4, taef2_channels=8,
                       taef2_latent_channels=4, stage_channels=8)


def tiny_model(backbone: str = "taef2", name: str = "tiny", levels: tuple[int, ...] = (16, 4), seed: int = 0) -> VQGAN:
    torch.manual_seed(seed)
    model = VQGAN(tiny_config(backbone, name)).eval()
    for size in levels:
        model.add_level(model.codebook()[:size] + 0.01)
    return model


def skewed_priors(model: VQGAN) -> dict[int, torch.Tensor]:
    counts = {}
    for level in model.levels:
        c = torch.arange(level, 0, -1, dtype=torch.long) ** 2
        counts[level] = c
    return priors_from_counts(counts)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Never touch the user's cache or download anything from tests."""
    monkeypatch.setenv("VQCODEC_HOME", str(tmp_path_factory.mktemp("vqcodec_home")))
    torch.set_num_threads(1)


def save_tiny_model(path: Path) -> Path:
    """Write the default tiny model with skewed priors to ``path``."""
    model = tiny_model()
    save_model(path, model, skewed_priors(model))
    return path


def require_squeezenet() -> None:
    """Skip the calling test when the LPIPS-Squeeze backbone (../shared/weights) is absent."""
    from vqcodec.metrics import squeezenet_backbone_path

    try:
        squeezenet_backbone_path()
    except FileNotFoundError:
        pytest.skip("LPIPS-Squeeze backbone (../shared/weights) not present")


def load_script(name: str):
    """Import ``scripts/<name>.py`` as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_model_path(tmp_path: Path) -> Path:
    return save_tiny_model(tmp_path / "tiny.safetensors")


@pytest.fixture
def photo() -> np.ndarray:
    """A deterministic 40×57 RGB test image with smooth gradients and an edge."""
    yy, xx = np.mgrid[0:40, 0:57]
    img = np.stack([xx * 4, yy * 6, (xx + yy) * 2], axis=-1) % 256
    img[10:20, 20:40] = [250, 30, 30]
    return img.astype(np.uint8)
