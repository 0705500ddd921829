"""Run by tests/test_training.py under ``torchrun --nproc-per-node 2``: trains a tiny model with
DDP (gloo); every rank records the world size it trained in and the step it finished at."""

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import tiny_config  # noqa: E402

from vqcodec.training.losses import LossConfig  # noqa: E402
from vqcodec.training.trainer import TrainConfig, train  # noqa: E402

data, out = sys.argv[1], sys.argv[2]
model_cfg = tiny_config()
model_cfg.l2_normalize = True
cfg = TrainConfig(data=data, out=out, steps=4, batch_size=2, crop=32, restart_every=2, checkpoint_every=2,
                  sample_every=100, kmeans_samples=64, loss=LossConfig(disc_start=2))
ckpt = train(cfg, model_cfg)
record = {"world": torch.distributed.get_world_size(), "step": torch.load(ckpt, weights_only=True)["step"]}
(Path(out) / f"rank{os.environ['RANK']}.json").write_text(json.dumps(record))
