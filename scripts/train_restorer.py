#!/usr/bin/env python
"""Train (or resume) the lost-index restorer of a model and export it beside the model.

The model's index grids of the training photos (and their mirror images) are computed once and
cached in ``<out>/grids.npz``; training then runs on random crops and masks of them.

Example (how the default restorer was trained; rerunning resumes from runs/restorer/last.pt):
    python scripts/train_restorer.py --model vqcodec/assets/vqcodec-f16.safetensors --data ../shared/data/train \
        --out runs/restorer --max-images 120 --steps 6000 --threads 2
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vqcodec.models.restorer import RestorerConfig  # noqa: E402
from vqcodec.training.data import list_images  # noqa: E402
from vqcodec.training.restorer import (  # noqa: E402
    RestorerTrainConfig,
    encode_grids,
    load_grids,
    masked_accuracy,
    save_grids,
    train_restorer,
)
from vqcodec.weights import load_model, save_restorer  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the vqcodec .safetensors model whose indices are restored")
    p.add_argument("--data", required=True, help="training photos (never Kodak/CLIC)")
    p.add_argument("--out", required=True, help="run folder: grids.npz, last.pt, log")
    p.add_argument("--export", help="restorer file to write (default: <model>.restorer.safetensors beside the model)")
    p.add_argument("--holdout", type=int, default=24, help="photos held out for the accuracy check")
    p.add_argument("--steps", type=int, default=3000, help="planned length: the learning rate decays to 5 %% by then")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--crop", type=int, default=16, help="grid crop size (indices)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--max-minutes", type=float)
    p.add_argument("--max-images", type=int, help="use only this many training photos (quick runs)")
    p.add_argument("--threads", type=int)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    loaded = load_model(args.model)
    model = loaded.model
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "grids.npz"
    files = list_images(args.data)
    random.Random(args.seed).shuffle(files)
    files = files[: args.max_images] if args.max_images else files
    grids = load_grids(cache, loaded.fingerprint)
    if grids is None:
        grids = encode_grids(model.to("cuda" if torch.cuda.is_available() else "cpu"), files)
        model.cpu()
        save_grids(cache, grids, loaded.fingerprint)
    held_out = {level: items[: 2 * args.holdout] for level, items in grids.items()}
    train = {level: items[2 * args.holdout :] for level, items in grids.items()}

    cfg = RestorerTrainConfig(out=str(out), steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr,
                              max_minutes=args.max_minutes, seed=args.seed)
    config = RestorerConfig(code_dim=model.config.embed_dim, width=args.width, depth=args.depth, heads=args.heads)
    restorer = train_restorer(cfg, model, train, held_out, config)
    logging.info("held-out one-shot accuracy at 20%% scattered loss: %s", masked_accuracy(restorer, model, held_out))
    export = Path(args.export) if args.export else Path(args.model).with_suffix(".restorer.safetensors")
    save_restorer(export, restorer, loaded.fingerprint)
    logging.info("wrote %s", export)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
