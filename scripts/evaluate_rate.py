#!/usr/bin/env python
"""Rate control over a sweep of targets: achieved bpp against target, chosen operating points, time.

    python scripts/evaluate_rate.py --data ../shared/data/kodak --out results/rate_kodak --readme docs/evaluation.md

For every image and target bpp, ``Codec.encode(image, bpp=target)`` writes a real file; the table
gives the mean achieved bpp over the target (the target: never over, mean at least 0.9), how often
each scale was chosen, PSNR of the decode, and encode time against a plain ``--level`` encode.
Resumable: finished (image, target) rows in ``per_image.csv`` are kept.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _readme import replace_block  # noqa: E402

from vqcodec import Codec  # noqa: E402
from vqcodec.codec.image_io import image_to_tensor, load_image  # noqa: E402
from vqcodec.metrics import psnr  # noqa: E402
from vqcodec.training.data import list_images  # noqa: E402

FIELDS = ["image", "target", "bpp", "level", "scale", "psnr", "encode_s", "plain_encode_s"]


def table(rows: list[dict]) -> str:
    lines = ["| target bpp | mean bpp | achieved / target (min, mean) | over target | scale < 1 | mean scale | PSNR "
             "| encode time vs plain |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for target in sorted({float(r["target"]) for r in rows}):
        rs = [r for r in rows if float(r["target"]) == target]
        ratio = [float(r["bpp"]) / target for r in rs]
        scales = [float(r["scale"]) for r in rs]
        slow = statistics.mean(float(r["encode_s"]) / float(r["plain_encode_s"]) for r in rs)
        lines.append(
            f"| {target:.3f} | {statistics.mean(float(r['bpp']) for r in rs):.4f} | {min(ratio):.2f}, {statistics.mean(ratio):.2f} "
            f"| {sum(x > 1 for x in ratio)} | {sum(s < 1 for s in scales)}/{len(rs)} | {statistics.mean(scales):.2f} "
            f"| {statistics.mean(float(r['psnr']) for r in rs):.2f} | {slow:.1f}× |")
    return "\n".join(lines)


def sheet(codec: Codec, path: Path, target: float, out: Path) -> None:
    """Original, the fixed level nearest the target at full size, and rate control, side by side (JPEG)."""
    from PIL import Image, ImageDraw

    image = load_image(path)
    arr = np.asarray(image)
    fixed = max((codec.encode(arr, level=level) for level in codec.levels), key=lambda e: (e.bpp <= target, -abs(e.bpp - target)))
    chosen = codec.encode(arr, bpp=target)
    h = chosen.header
    tiles = [("original", image), (f"level {fixed.header.level}, full size: {fixed.bpp:.4f} bpp", codec.decode(fixed.data)),
             (f"--bpp {target}: level {h.level} at {h.coded_size[0]}x{h.coded_size[1]}, {chosen.bpp:.4f} bpp",
              codec.decode(chosen.data))]
    width = image.width // 2
    box = ((image.width - width) // 2, 0, (image.width + width) // 2, min(image.height, 384))
    canvas = Image.new("RGB", (3 * width, box[3] + 18), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (name, tile) in enumerate(tiles):
        canvas.paste(tile.crop(box), (i * width, 18))
        draw.text((i * width + 4, 3), name, fill="black")
    canvas.save(out, quality=90)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--model", default=None)
    p.add_argument("--targets", type=float, nargs="+", default=[0.01, 0.02, 0.03, 0.04, 0.05])
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--readme", help="Markdown file whose `rate_<data name>` block is rewritten")
    p.add_argument("--sheet-image", help="with --readme: an image of --data shown in a comparison sheet")
    p.add_argument("--sheet-target", type=float, default=0.02, help="the sheet's target bpp (default 0.02)")
    args = p.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "per_image.csv"
    rows = list(csv.DictReader(open(csv_path))) if csv_path.exists() else []
    done = {(r["image"], float(r["target"])) for r in rows}
    codec = Codec.from_pretrained(args.model, device="cpu")
    files = list_images(args.data)[: args.limit]
    with open(csv_path, "a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if not rows:
            writer.writeheader()
        for path in tqdm(files, desc="images", unit="img"):
            image = np.asarray(load_image(path))
            pixels = image.shape[0] * image.shape[1]
            started = time.perf_counter()
            codec.encode(image)
            plain_s = time.perf_counter() - started
            for target in args.targets:
                if (path.name, target) in done:
                    continue
                started = time.perf_counter()
                encoded = codec.encode(image, bpp=target)
                encode_s = time.perf_counter() - started
                h = encoded.header
                row = {"image": path.name, "target": target, "bpp": len(encoded.data) * 8 / pixels, "level": h.level,
                       "scale": h.coded_size[0] / h.width,
                       "psnr": float(psnr(image_to_tensor(codec.decode(encoded.data)), image_to_tensor(image))[0]),
                       "encode_s": encode_s, "plain_encode_s": plain_s}
                writer.writerow(row)
                f.flush()
                rows.append({k: str(v) for k, v in row.items()})
    text = table(rows)
    print(text)
    if args.readme:
        command = "python scripts/evaluate_rate.py " + " ".join(argv if argv is not None else sys.argv[1:])
        images = len({r["image"] for r in rows})
        name = Path(args.data).name
        block = f"{images} images; the command: `{command}`.\n\n{text}\n"
        if args.sheet_image:
            img = Path(args.readme).parent / "img"
            img.mkdir(parents=True, exist_ok=True)
            sheet(codec, Path(args.data) / args.sheet_image, args.sheet_target, img / f"rate_{name}.jpg")
            block += (f"\n![{args.sheet_image}: a fixed level at full size against rate control at "
                      f"{args.sheet_target} bpp](img/rate_{name}.jpg)\n")
        replace_block(Path(args.readme), f"rate_{name}", block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
