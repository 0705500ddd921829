"""Shared fixtures: tiny random-init models written to temporary files (never the shipped model).

The model recipe lives in :mod:`vqcodec.testing.models`; its names are re-exported here for the
tests that import them from ``conftest``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vqcodec.testing.models import (  # noqa: F401 - re-exported for the tests
    TAMING_DDCONFIG,
    random_squeezenet,
    save_tiny_model,
    skewed_priors,
    tiny_config,
    tiny_model,
)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Never touch the user's cache or download anything from tests."""
    monkeypatch.setenv("VQCODEC_HOME", str(tmp_path_factory.mktemp("vqcodec_home")))
    torch.set_num_threads(1)


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


@pytest.fixture(scope="session")
def squeezenet_path(tmp_path_factory) -> Path:
    """A random-init SqueezeNet-1.1 state dict standing in for the ImageNet backbone: LPIPS-Squeeze
    and KID-Squeeze code runs without ../shared (the numbers mean nothing)."""
    return random_squeezenet(tmp_path_factory.mktemp("squeezenet") / "squeezenet1_1-random.pth")


@pytest.fixture
def photo() -> np.ndarray:
    """A deterministic 40×57 RGB test image with smooth gradients and an edge."""
    yy, xx = np.mgrid[0:40, 0:57]
    img = np.stack([xx * 4, yy * 6, (xx + yy) * 2], axis=-1) % 256
    img[10:20, 20:40] = [250, 30, 30]
    return img.astype(np.uint8)


@pytest.fixture
def mock_squeezenet(squeezenet_path, monkeypatch) -> Path:
    """Point LPIPS-Squeeze/KID-Squeeze (and subprocesses) at the random backbone via $VQCODEC_SQUEEZENET."""
    monkeypatch.setenv("VQCODEC_SQUEEZENET", str(squeezenet_path))
    return squeezenet_path


def noisy_gradient(height: int, width: int, noise: int, seed: int) -> np.ndarray:
    """Gradients and a product pattern plus uniform noise: enough structure to fill several codes."""
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack([xx * 2, yy * 2, (xx * yy) % 256], -1) + np.random.default_rng(seed).integers(0, noise, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def codec(tiny_model_path):
    """A CPU codec over the tiny model."""
    from vqcodec import Codec

    return Codec.from_pretrained(tiny_model_path, device="cpu")
