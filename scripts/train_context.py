#!/usr/bin/env python
"""Train (or resume) the context entropy model of a model and export its integer tables beside it.

Index grids of the training photos (and their mirror images) at the given scales are computed once
and cached in ``<out>/grids_<folder>_{train,holdout}.npz``; every 20th photo of each folder is held
out and only used to report the real payload savings against the static prior.

Example (how the default context model was trained; rerunning resumes from runs/context/last.pt):
    python scripts/train_context.py --model vqcodec/assets/vqcodec-f16.safetensors \\
        --data ../shared/data/train:1,0.5 --data ../shared/data/train_hr:0.5,0.25 \\
        --out runs/context --max-minutes 60 --threads 2
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vqcodec.entropy.context import ContextTables  # noqa: E402
from vqcodec.models.context import ContextConfig  # noqa: E402
from vqcodec.training.context import ContextTrainConfig, measure, train_context  # noqa: E402
from vqcodec.training.data import list_images  # noqa: E402
from vqcodec.training.restorer import encode_grids, load_grids, save_grids  # noqa: E402
from vqcodec.weights import load_model, save_context  # noqa: E402


def _grids(model, fingerprint: bytes, out: Path, spec: str) -> tuple[dict, dict]:
    """(training, held-out) grids of one ``FOLDER:SCALE,SCALE`` spec, from the cache when it fits."""
    folder, _, scales = spec.partition(":")
    scales = tuple(float(s) for s in scales.split(",")) if scales else (1.0,)
    files = list_images(folder)
    split = {"holdout": files[::20], "train": [f for i, f in enumerate(files) if i % 20]}
    result = {}
    for name, subset in split.items():
        cache = out / f"grids_{Path(folder).name}_{name}.npz"
        grids = load_grids(cache, fingerprint)
        if grids is None:
            grids = encode_grids(model, subset, scales=scales)
            save_grids(cache, grids, fingerprint)
        result[name] = grids
    return result["train"], result["holdout"]


def _merge(parts: list[dict]) -> dict:
    merged: dict = {}
    for part in parts:
        for level, items in part.items():
            merged.setdefault(level, []).extend(items)
    return merged


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the vqcodec .safetensors model whose indices are coded")
    p.add_argument("--data", action="append", required=True,
                   help="FOLDER[:SCALES]: training photos (never Kodak/CLIC) and the scales to code them at")
    p.add_argument("--out", required=True, help="run folder: grid caches, last.pt, log")
    p.add_argument("--export", help="file to write (default: <model>.context.safetensors beside the model)")
    p.add_argument("--steps", type=int, default=4000, help="planned length: the learning rate decays to 5 %% by then")
    p.add_argument("--batch-size", type=int, default=24)
    p.add_argument("--crop", type=int, default=20, help="grid crop size (a multiple of 4)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--embed", type=int, default=24)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--dilations", default="1,2,4,2,1", help="one 3x3 layer per entry")
    p.add_argument("--max-minutes", type=float)
    p.add_argument("--measure-images", type=int, default=20, help="held-out photos per level for the byte report")
    p.add_argument("--threads", type=int)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.crop % 4:
        p.error("--crop must be a multiple of 4")

    loaded = load_model(args.model)
    model = loaded.model.eval()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = [_grids(model, loaded.fingerprint, out, spec) for spec in args.data]
    train, held_out = _merge([s[0] for s in splits]), _merge([s[1] for s in splits])

    cfg = ContextTrainConfig(out=str(out), steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr,
                             max_minutes=args.max_minutes, seed=args.seed)
    config = ContextConfig(code_dim=model.config.embed_dim, embed=args.embed, width=args.width,
                           dilations=[int(d) for d in args.dilations.split(",")])
    net = train_context(cfg, model, train, loaded.priors, config)
    tables = ContextTables(net.export({level: model.codebook(level) for level in model.levels}))
    report = measure(tables, held_out, loaded.priors, args.measure_images)
    for level, r in report.items():
        logging.info("level %5d: held-out payload %7d B context vs %7d B static prior (%.1f %% saved)",
                     level, r["context_bytes"], r["static_bytes"], 100 * r["saving"])
    (out / "holdout_bytes.json").write_text(json.dumps(report, indent=1))
    export = Path(args.export) if args.export else Path(args.model).with_suffix(".context.safetensors")
    save_context(export, tables, loaded.fingerprint, net.config)
    logging.info("wrote %s", export)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
