#!/usr/bin/env python
"""Pack what a GPU training run needs into the 64 MiB that travel to the device machine, and
rebuild the checkpoints it sends back in pieces under 16 MiB.

    # here: a compact training shard (re-encoded JPEGs within a byte budget) + the run's checkpoint in pieces
    python scripts/gpu_kit.py shard --data ../shared/data/train --out device_carry/shard --budget-mb 40
    python scripts/gpu_kit.py split runs/default/last.pt --out device_carry/ckpt
    # on the device (carry device_carry/): join, train, split the new checkpoint into $OUT
    python scripts/gpu_kit.py join device_carry/ckpt/last.pt.pieces.json --dest runs/default/last.pt
    python scripts/train_vqgan.py --data device_carry/shard --out runs/default ... --max-minutes 8
    python scripts/gpu_kit.py split runs/default/last.pt --out $OUT/ckpt
    # back here
    python scripts/gpu_kit.py join <files_at>/ckpt/last.pt.pieces.json --dest runs/default/last.pt

A checkpoint with its optimizer state (68 MB for the default model) leaves no room for a shard;
``train_vqgan.py --init-model MODEL.safetensors`` starts a run from the exported 7.7 MB weights
instead (fresh optimizer), which is how the shipped weights were trained on a GPU. Successive
shards can be made disjoint (``--exclude`` an earlier shard) and keep ``--holdout`` photos unseen.

``split`` writes ``<name>.partNNN`` pieces and a ``<name>.pieces.json`` manifest with the SHA-256
of every piece and of the whole; ``join`` checks them all before it rebuilds the file.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
from pathlib import Path

from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vqcodec.fileio import atomic_write, sha256_bytes  # noqa: E402
from vqcodec.training.data import list_images  # noqa: E402


def make_shard(
    data: str, out: str, budget_mb: float, quality: int, seed: int,
    holdout: int = 0, holdout_seed: int = 0, exclude: str | None = None,
) -> tuple[int, int]:
    """Re-encode training photos (random order) as JPEG until the byte budget is reached.

    ``holdout`` photos (the first of a ``holdout_seed`` shuffle) and those already in the shard
    ``exclude`` are left out, so successive shards are disjoint and a held-out set stays unseen.
    """
    files = list_images(data)
    shuffled = list(files)
    random.Random(holdout_seed).shuffle(shuffled)
    held = set(shuffled[:holdout])
    taken = {p.stem for p in Path(exclude).iterdir()} if exclude else set()
    files = [p for p in files if p not in held and p.stem not in taken]
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


def split_file(path: str | Path, out_dir: str | Path, max_bytes: int = 15 * 2**20) -> Path:
    """Split ``path`` into pieces of at most ``max_bytes`` in ``out_dir``; returns the manifest path."""
    path, out_dir = Path(path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = path.read_bytes()
    pieces = []
    for i, start in enumerate(range(0, max(len(data), 1), max_bytes)):
        chunk = data[start : start + max_bytes]
        name = f"{path.name}.part{i:03d}"
        atomic_write(out_dir / name, chunk, force=True)
        pieces.append({"file": name, "bytes": len(chunk), "sha256": sha256_bytes(chunk)})
    manifest = out_dir / f"{path.name}.pieces.json"
    text = json.dumps({"name": path.name, "bytes": len(data), "sha256": sha256_bytes(data), "pieces": pieces}, indent=1)
    atomic_write(manifest, text.encode(), force=True)
    return manifest


def join_pieces(manifest: str | Path, dest: str | Path | None = None) -> Path:
    """Rebuild the file a manifest describes (beside it unless ``dest``), verifying every checksum."""
    manifest = Path(manifest)
    info = json.loads(manifest.read_text())
    parts = []
    for piece in info["pieces"]:
        chunk = (manifest.parent / piece["file"]).read_bytes()
        if sha256_bytes(chunk) != piece["sha256"]:
            raise ValueError(f"{piece['file']}: SHA-256 mismatch (damaged or incomplete transfer)")
        parts.append(chunk)
    data = b"".join(parts)
    if sha256_bytes(data) != info["sha256"]:
        raise ValueError(f"{info['name']}: SHA-256 of the joined pieces does not match the manifest")
    dest = Path(dest) if dest else manifest.parent / info["name"]
    atomic_write(dest, data, force=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    shard = sub.add_parser("shard", help="compact training shard within a byte budget")
    shard.add_argument("--data", required=True)
    shard.add_argument("--out", required=True)
    shard.add_argument("--budget-mb", type=float, default=40.0)
    shard.add_argument("--quality", type=int, default=90)
    shard.add_argument("--seed", type=int, default=0)
    shard.add_argument("--holdout", type=int, default=0, help="photos never put in a shard (to judge the model on)")
    shard.add_argument("--holdout-seed", type=int, default=0)
    shard.add_argument("--exclude", help="an earlier shard whose photos this one leaves out")
    split = sub.add_parser("split", help="split a file into pieces + manifest")
    split.add_argument("file")
    split.add_argument("--out", required=True)
    split.add_argument("--max-mb", type=float, default=15.0)
    join = sub.add_parser("join", help="verify pieces and rebuild the file")
    join.add_argument("manifest")
    join.add_argument("--dest")
    args = p.parse_args(argv)
    if args.command == "shard":
        count, used = make_shard(args.data, args.out, args.budget_mb, args.quality, args.seed,
                                 args.holdout, args.holdout_seed, args.exclude)
        print(f"wrote {count} photos, {used / 2**20:.1f} MiB, to {args.out}")
    elif args.command == "split":
        print(f"wrote {split_file(args.file, args.out, int(args.max_mb * 2**20))}")
    else:
        print(f"wrote {join_pieces(args.manifest, args.dest)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
