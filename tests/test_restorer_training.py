"""Restorer training: masks, learning-rate schedule, that it learns, and that it resumes."""

from __future__ import annotations

import numpy as np
import torch
from conftest import tiny_model

from vqcodec.models.restorer import RestorerConfig
from vqcodec.training.loop import warmup_cosine
from vqcodec.training.restorer import RestorerTrainConfig, masked_accuracy, random_masks, train_restorer


def test_random_masks_lose_between_2_and_65_percent():
    rng = np.random.default_rng(0)
    known = random_masks((400, 16, 16), np.zeros((400, 2), dtype=int), rng)
    lost = 1 - known.reshape(400, -1).mean(1)
    assert lost.min() > 0 and lost.max() <= 0.8  # packet masks round to whole packets
    assert 0.2 < lost.mean() < 0.45


def test_learning_rate_warms_up_then_decays_to_five_percent():
    factors = [warmup_cosine(s, 100, 1000) for s in range(1000)]
    assert factors[0] == 0.01 and factors[99] == 1.0
    assert all(a >= b for a, b in zip(factors[100:], factors[101:]))
    assert abs(warmup_cosine(1000, 100, 1000) - 0.05) < 1e-9


def _striped_grids(count: int, codes: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Grids whose rows repeat one code: a lost index is predictable from its row."""
    return [np.repeat(rng.integers(0, codes, (12, 1)), 12, axis=1).astype(np.int16) for _ in range(count)]


def test_restorer_learns_and_resumes(tmp_path):
    torch.manual_seed(0)
    model = tiny_model(levels=(16,))
    rng = np.random.default_rng(0)
    grids = {16: _striped_grids(24, 16, rng)}
    held_out = {16: _striped_grids(8, 16, rng)}
    config = RestorerConfig(code_dim=model.config.embed_dim, width=32, depth=2, heads=2)
    cfg = RestorerTrainConfig(out=str(tmp_path), steps=400, batch_size=8, crop=8, lr=2e-3, warmup=20, eval_every=10**6)
    restorer = train_restorer(cfg, model, grids, held_out, config)
    accuracy = masked_accuracy(restorer, model, held_out)
    assert accuracy["transformer"] > 0.6, accuracy  # chance is 1/16

    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["step"] == 400
    cfg.steps = 410
    resumed = train_restorer(cfg, model, grids, held_out)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 410
    assert resumed.config == restorer.config
