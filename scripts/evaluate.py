#!/usr/bin/env python
"""Rate–distortion evaluation of vqcodec on a folder of images (Kodak, CLIC, your own).

For every image and level a real .vqc file is written and measured: bpp (file bytes × 8 / pixels,
header included), PSNR (RGB), MS-SSIM, LPIPS-Squeeze, encode and decode time. Rows go to
``<out>/per_image.csv`` (resumable: finished rows are skipped) and averages per level to
``<out>/summary.csv`` and ``summary.json``.

    python scripts/evaluate.py --data ../shared/data/kodak --out results/kodak
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vqcodec import Codec  # noqa: E402
from vqcodec.codec.image_io import load_image  # noqa: E402
from vqcodec.metrics import lpips_squeeze, ms_ssim, psnr  # noqa: E402
from vqcodec.training.data import list_images  # noqa: E402

FIELDS = ["image", "codec", "level", "width", "height", "bytes", "bpp", "psnr", "ms_ssim", "lpips_squeeze",
          "encode_s", "decode_s"]
METRICS = ["bpp", "psnr", "ms_ssim", "lpips_squeeze", "encode_s", "decode_s"]


def to_tensor(im) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)[None].float() / 255.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder of images")
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--model", default=None, help="registered name or path (default: vqcodec-f16)")
    p.add_argument("--levels", type=int, nargs="*", help="levels to run (default: all)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lpips-backbone", help="SqueezeNet-1.1 state dict (default: ../shared/weights)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    (out / "files").mkdir(parents=True, exist_ok=True)
    codec = Codec.from_pretrained(args.model, device=args.device)
    levels = args.levels or codec.levels
    lpips = lpips_squeeze(args.lpips_backbone)
    per_image = out / "per_image.csv"
    done = set()
    if per_image.exists():
        with open(per_image) as f:
            done = {(r["image"], r["codec"], int(r["level"])) for r in csv.DictReader(f)}
    new_file = not per_image.exists()
    name = f"vqcodec:{codec.model_id}"
    jobs = [(path, level) for path in list_images(args.data) for level in levels if (path.name, name, level) not in done]
    with open(per_image, "a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if new_file:
            writer.writeheader()
        for path, level in tqdm(jobs, desc="evaluate", unit="run"):
            image = load_image(path)
            t0 = time.perf_counter()
            data = codec.encode(image, level=level)
            t1 = time.perf_counter()
            decoded = codec.decode(data)
            t2 = time.perf_counter()
            (out / "files" / f"{path.stem}_{level}.vqc").write_bytes(data)
            x, y = to_tensor(image), to_tensor(decoded)
            with torch.inference_mode():
                row = {
                    "image": path.name, "codec": name, "level": level, "width": image.width, "height": image.height,
                    "bytes": len(data), "bpp": len(data) * 8 / (image.width * image.height),
                    "psnr": float(psnr(x, y)[0]), "ms_ssim": float(ms_ssim(x, y)[0]),
                    "lpips_squeeze": float(lpips(x, y).flatten()[0]), "encode_s": t1 - t0, "decode_s": t2 - t1,
                }
            writer.writerow(row)
            f.flush()

    rows = defaultdict(list)
    with open(per_image) as f:
        for r in csv.DictReader(f):
            rows[(r["codec"], int(r["level"]))].append(r)
    summary = []
    for (codec_name, level), rs in sorted(rows.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        entry = {"codec": codec_name, "level": level, "images": len(rs)}
        for m in METRICS:
            entry[m] = float(np.nanmean([float(r[m]) for r in rs]))
        summary.append(entry)
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["codec", "level", "images", *METRICS])
        writer.writeheader()
        writer.writerows(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"{'codec':28}{'level':>6}{'bpp':>8}{'PSNR':>8}{'MS-SSIM':>9}{'LPIPS-Sq':>10}{'enc s':>7}{'dec s':>7}")
    for e in summary:
        print(f"{e['codec']:28}{e['level']:>6}{e['bpp']:>8.4f}{e['psnr']:>8.2f}{e['ms_ssim']:>9.4f}"
              f"{e['lpips_squeeze']:>10.4f}{e['encode_s']:>7.2f}{e['decode_s']:>7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
