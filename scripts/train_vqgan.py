#!/usr/bin/env python
"""Train (or resume) a vqcodec VQGAN and optionally export it as a safetensors model.

Example (how the default model was trained; rerunning the same command resumes from runs/default/last.pt):
    python scripts/train_vqgan.py --data ../shared/data/train --out runs/default \
        --taef2 ../shared/weights/taef2 --n-embed 4096 --latent-warmup 500 --restart-every 50 \
        --steps 100000 --disc-start 1700 --max-minutes 50

Several processes (GPUs, or CPU processes with gloo): torchrun --nproc-per-node N scripts/train_vqgan.py ...
Several machines: docs/training.md, "Several machines".
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vqcodec.models import ModelConfig  # noqa: E402
from vqcodec.training.losses import LossConfig  # noqa: E402
from vqcodec.training.trainer import TrainConfig, load_checkpoint_model, train  # noqa: E402
from vqcodec.weights import load_model, save_model  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, nargs="+", help="folders of training photos (never Kodak/CLIC)")
    p.add_argument("--out", required=True, help="run folder: checkpoints (last.pt), samples, log")
    p.add_argument("--name", default="vqcodec-f16", help="model name written into the config")
    p.add_argument("--n-embed", type=int, default=4096, help="full codebook size")
    p.add_argument("--embed-dim", type=int, default=32)
    p.add_argument("--taef2", help="folder with taef2_encoder.pth / taef2_decoder.pth to start from")
    p.add_argument("--init-model", help="start a new run from this vqcodec .safetensors model (its config is used)")
    p.add_argument("--init-realism", type=float, metavar="R",
                   help="with --init-model: start the decoder from the model's fidelity-realism blend at R (0: its R=0 decoder)")
    p.add_argument("--workers", type=int, default=0, help="data-loading processes (several on a GPU)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--max-upscale", type=float, default=1.0,
                   help="enlarge random smaller patches up to this factor to show more smooth regions (1 = off)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--restart-every", type=int, default=100, help="steps between dead-code restarts")
    p.add_argument("--latent-warmup", type=int, default=0,
                   help="steps fitting the f16 stages to TAEF2 latents before K-means init (taef2 start only)")
    p.add_argument("--disc-start", type=int, help="step at which the PatchGAN loss starts (default: never)")
    p.add_argument("--disc-weight", type=float, default=0.1, help="scale of the adaptive adversarial weight")
    p.add_argument("--train-only", choices=["decoder"],
                   help="train only the decoder side (encoder and codebook frozen: existing files keep their meaning)")
    p.add_argument("--deployed-inputs", action="store_true",
                   help="with --train-only decoder: decode what files carry (random levels, coarse tokens)")
    p.add_argument("--l1-weight", type=float, default=1.0)
    p.add_argument("--mse-weight", type=float, default=0.0, help="weight of an MSE fidelity term")
    p.add_argument("--perceptual-weight", type=float, default=1.0, help="weight of LPIPS-Squeeze")
    p.add_argument("--ema-decay", type=float, default=0.995, help="decay of the exported weight average")
    p.add_argument("--max-minutes", type=float, help="stop (and checkpoint) after this much wall time")
    p.add_argument("--lpips-backbone", help="SqueezeNet-1.1 ImageNet state dict for LPIPS-Squeeze")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--export", help="write the trained model as safetensors (fp16) to this path")
    args = p.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.init_model:
        model_cfg = load_model(args.init_model).model.config
    else:
        model_cfg = ModelConfig(
            name=args.name, backbone="taef2", n_embed=args.n_embed, embed_dim=args.embed_dim, l2_normalize=True
        )
    cfg = TrainConfig(
        data=args.data, out=args.out, steps=args.steps, batch_size=args.batch_size, crop=args.crop, max_upscale=args.max_upscale,
        lr=args.lr, latent_warmup_steps=args.latent_warmup, restart_every=args.restart_every, taef2_dir=args.taef2,
        lpips_backbone=args.lpips_backbone, max_minutes=args.max_minutes, ema_decay=args.ema_decay,
        loss=LossConfig(disc_start=args.disc_start, disc_weight=args.disc_weight, l1_weight=args.l1_weight,
                        mse_weight=args.mse_weight, perceptual_weight=args.perceptual_weight),
        init_model=args.init_model, init_realism=args.init_realism, num_workers=args.workers, train_only=args.train_only,
        deployed_inputs=args.deployed_inputs,
    )
    ckpt = train(cfg, model_cfg)
    if args.export and os.environ.get("RANK", "0") == "0":  # torchrun: rank 0 alone has last.pt on every layout
        save_model(args.export, load_checkpoint_model(ckpt))
        logging.info("exported %s", args.export)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
