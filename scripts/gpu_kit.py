#!/usr/bin/env python
"""Pack what a GPU training run needs into the 64 MiB that travel to the device machine, and
rebuild the checkpoints it sends back in pieces under 16 MiB.

    # here: a compact training shard (re-encoded JPEGs within a byte budget) + the run's checkpoint in pieces
    python scripts/gpu_kit.py shard --data ../shared/data/train --out gpu/shard --budget-mb 40
    python scripts/gpu_kit.py split runs/default/last.pt --out gpu/ckpt
    # on the device (carry gpu/): join, train, split the new checkpoint into $OUT
    python scripts/gpu_kit.py join gpu/ckpt/last.pt.pieces.json --dest runs/default/last.pt
    python scripts/train_vqgan.py --data gpu/shard --out runs/default ... --max-minutes 8
    python scripts/gpu_kit.py split runs/default/last.pt --out $OUT/ckpt
    # back here
    python scripts/gpu_kit.py join <files_at>/ckpt/last.pt.pieces.json --dest runs/default/last.pt
"""

from __future__ import annotations

import argparse
import io
import random
import sys
from pathlib import Path

from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vqcodec.fileio import atomic_write  # noqa: E402
from vqcodec.training.data import list_images  # noqa: E402
from vqcodec.training.pieces import join_pieces, split_file  # noqa: E402


def make_shard(data: str, out: str, budget_mb: float, quality: int, seed: int) -> tuple[int, int]:
    """Re-encode training photos (random order) as JPEG until the byte budget is reached."""
    files = list_images(data)
    random.Random(seed).shuffle(files)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    budget, used, count = int(budget_mb * 2**20), 0, 0
    for path in tqdm(files, desc="shard", unit="img"):
        with Image.open(path) as im:
            buf = io.BytesIO()
            im.convert("RGB").save(buf, "JPEG", quality=quality)
        if used + buf.tell() > budget:
            break
        atomic_write(out_dir / f"{path.stem}.jpg", buf.getvalue(), force=True)
        used += buf.tell()
        count += 1
    return count, used


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    shard = sub.add_parser("shard", help="compact training shard within a byte budget")
    shard.add_argument("--data", required=True)
    shard.add_argument("--out", required=True)
    shard.add_argument("--budget-mb", type=float, default=40.0)
    shard.add_argument("--quality", type=int, default=90)
    shard.add_argument("--seed", type=int, default=0)
    split = sub.add_parser("split", help="split a file into pieces + manifest")
    split.add_argument("file")
    split.add_argument("--out", required=True)
    split.add_argument("--max-mb", type=float, default=15.0)
    join = sub.add_parser("join", help="verify pieces and rebuild the file")
    join.add_argument("manifest")
    join.add_argument("--dest")
    args = p.parse_args(argv)
    if args.command == "shard":
        count, used = make_shard(args.data, args.out, args.budget_mb, args.quality, args.seed)
        print(f"wrote {count} photos, {used / 2**20:.1f} MiB, to {args.out}")
    elif args.command == "split":
        print(f"wrote {split_file(args.file, args.out, int(args.max_mb * 2**20))}")
    else:
        print(f"wrote {join_pieces(args.manifest, args.dest)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
