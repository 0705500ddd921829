#!/usr/bin/env python
"""Build the codebook levels of a model and measure each level's static prior.

1. Encode training photos with the full codebook and count how often each code is used.
2. K-means (scikit-learn) of the full codebook into each level size, codes weighted by usage.
3. Optionally fine-tune each level (``--finetune-steps``): its codebook and the 1x1 quant convs with
   the VQGAN loss, encoder and decoder frozen; for the levels in ``--decoder-levels`` also a
   variant that tunes the decoder. A variant replaces the K-means level only if it is better on
   held-out training photos in both PSNR and LPIPS-Squeeze (``keep_finetuned`` in
   vqcodec.training.levels). Numbers go to ``<out>.levels.json``.
4. Encode the photos again at every level and store the index histograms as integer priors.

Example:
    python scripts/build_levels.py --checkpoint runs/default/last.pt --data ../shared/data/train \
        --out vqcodec/assets/vqcodec-f16.safetensors --default-level 1024 --finetune-steps 80 --decoder-levels 64 32 16 8
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import random
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vqcodec.codec.image_io import image_to_tensor, load_image  # noqa: E402
from vqcodec.training.data import RandomCrops, list_images  # noqa: E402
from vqcodec.training.levels import (  # noqa: E402
    finetune_level,
    index_counts,
    keep_finetuned,
    kmeans_codebook,
    level_quality,
    priors_from_counts,
)
from vqcodec.training.losses import LossConfig, VQLoss  # noqa: E402
from vqcodec.training.trainer import load_checkpoint_model  # noqa: E402
from vqcodec.weights import load_model, save_model  # noqa: E402

PAPER_LEVELS = [2048, 1024, 512, 256, 128, 64, 32, 16, 8]


def image_batches(files: list[Path], factor: int):
    """Whole training images, cropped to a multiple of the factor, one per batch."""
    for path in tqdm(files, desc="images", unit="img"):
        im = load_image(path)
        w, h = (im.width // factor) * factor, (im.height // factor) * factor
        yield image_to_tensor(im.crop((0, 0, w, h)))


def _square_crop(image, size: int, factor: int):
    side = min(size, image.width, image.height) // factor * factor
    return image.crop((0, 0, side, side))


def finetune_levels(model, args, tuning_files: list[Path], holdout: list[Path]) -> dict:
    """Fine-tune every level in place; returns held-out quality before and after, per level."""
    torch.manual_seed(args.seed)
    criterion = VQLoss(LossConfig(), args.lpips_backbone)
    crops = RandomCrops(tuning_files, args.crop, seed=args.seed)
    loader = DataLoader(crops, batch_size=args.batch_size, shuffle=True, drop_last=True)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    held_out = [image_to_tensor(_square_crop(load_image(p), 256, model.config.downsampling)) for p in holdout]
    report = {}
    for level in tqdm(sorted(model.level_codebooks, reverse=True), desc="fine-tuning", unit="level"):
        kept = (model.codebook(level).clone(), {})
        entry = {"kmeans": level_quality(model, level, held_out, criterion.perceptual), "kept": "kmeans"}
        variants = [("tuned", False)] + ([("tuned_decoder", True)] if level in args.decoder_levels else [])
        for name, tune_decoder in variants:
            model.add_level(*kept)
            model.add_level(*finetune_level(model, level, batches, args.finetune_steps, criterion, tune_decoder=tune_decoder))
            entry[name] = level_quality(model, level, held_out, criterion.perceptual)
            if keep_finetuned(entry[entry["kept"]], entry[name]):
                entry["kept"] = name
                kept = (model.codebook(level).clone(), model.level_overrides[level])
        model.add_level(*kept)
        report[level] = entry
        logging.info("level %d held-out: %s", level, json.dumps(entry))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="training checkpoint (last.pt) from scripts/train_vqgan.py")
    src.add_argument("--model", help="an existing vqcodec .safetensors model (its levels are rebuilt)")
    p.add_argument("--data", required=True, help="training photos (never Kodak/CLIC)")
    p.add_argument("--out", required=True, help="output .safetensors")
    p.add_argument("--levels", type=int, nargs="+", default=PAPER_LEVELS)
    p.add_argument("--default-level", type=int, default=0, help="level used when none is asked for (0: full)")
    p.add_argument("--max-images", type=int, default=300)
    p.add_argument("--finetune-steps", type=int, default=0, help="fine-tuning steps per level (0: K-means only)")
    p.add_argument("--decoder-levels", type=int, nargs="*", default=[], help="levels that also try tuning the decoder")
    p.add_argument("--holdout", type=int, default=24, help="training photos held out to judge the fine-tuning")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lpips-backbone", help="SqueezeNet-1.1 ImageNet state dict for LPIPS-Squeeze")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    model = load_checkpoint_model(args.checkpoint) if args.checkpoint else load_model(args.model).model
    model.level_codebooks, model.level_overrides = {}, {}
    model.config.default_level = args.default_level
    files = list_images(args.data)
    random.Random(args.seed).shuffle(files)
    holdout, files = files[: args.holdout], files[args.holdout :]
    tuning_files = files
    files = files[: args.max_images]
    factor = model.config.downsampling

    full = model.config.n_embed
    usage = index_counts(model, image_batches(files, factor), [full])[full]
    logging.info("full codebook: %d of %d codes used on %d images", int((usage > 0).sum()), full, len(files))
    raw_codebook = model.quantize.embedding.weight.detach()
    for size in tqdm(sorted(args.levels, reverse=True), desc="k-means", unit="level"):
        centers = kmeans_codebook(model.codebook(), size, usage, seed=args.seed)
        if not model.config.l2_normalize:
            centers = centers.to(raw_codebook.dtype)
        model.add_level(centers)
    if args.finetune_steps:
        report = finetune_levels(model, args, tuning_files, holdout)
        Path(args.out + ".levels.json").write_text(json.dumps(report, indent=1))
    counts = index_counts(model, image_batches(files, factor), model.levels)
    for level, c in counts.items():
        probs = c.double() / c.sum()
        nz = probs[probs > 0]
        logging.info("level %5d: entropy %.3f bits/index (uniform %.3f), %d codes used",
                     level, float(-(nz * nz.log2()).sum()), float(np.log2(level)), int((c > 0).sum()))
    save_model(args.out, model, priors_from_counts(counts))
    logging.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
