#!/usr/bin/env python
"""Rate–distortion evaluation: vqcodec levels vs classical codecs at the same measured bpp.

For every image, each vqcodec level writes a real .vqc file; its measured bpp (file bytes × 8 /
pixels, header included) is the target for every classical codec, run two ways:

- ``<codec>``: full resolution, the highest quality whose file is not larger than the target
  (no row metrics when even the lowest quality is larger; its lowest reachable bpp is recorded);
- ``<codec>+resample``: downscale (LANCZOS) → encode → upscale, the scale chosen per image for
  the best LPIPS-Squeeze under the target.

Metrics: PSNR (RGB), MS-SSIM (pytorch-msssim), LPIPS-Squeeze, encode and decode time, and per
codec and level KID-Squeeze: the kernel inception distance between SqueezeNet features of 256×256
patches of the originals and of the reconstructions (a realism measure; Inception is not
available offline, so this is not comparable to published KID values). LPIPS-Alex, LPIPS-VGG and FID
(Inception-v3, 256×256 patches resized to 299) are computed only when you supply the ImageNet
weights (``--lpips-alex``, ``--lpips-vgg``, ``--inception-weights``); otherwise they are skipped
with one message, never computed with random weights. Results:
``<out>/per_image.csv`` (resumable: finished images are skipped), ``summary.csv``/``summary.json``
(means per codec and level over the images where the codec reached the target).

    python scripts/evaluate.py --data ../shared/data/kodak --out results/kodak
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing as mp
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vqcodec import Codec  # noqa: E402
from vqcodec.codec.image_io import image_to_tensor, load_image  # noqa: E402
from vqcodec.evaluation.classical import Trials, available_codecs  # noqa: E402
from vqcodec.metrics import (  # noqa: E402
    fid,
    inception_features,
    kid,
    lpips_squeeze,
    lpips_with_backbone,
    ms_ssim,
    patches,
    psnr,
    squeezenet_features,
)
from vqcodec.training.data import list_images  # noqa: E402

FIELDS = ["image", "codec", "level", "target_bpp", "setting", "scale", "width", "height", "bytes", "bpp",
          "psnr", "ms_ssim", "lpips_squeeze", "lpips_alex", "lpips_vgg", "encode_s", "decode_s", "lowest_bpp"]
METRICS = ["bpp", "psnr", "ms_ssim", "lpips_squeeze", "lpips_alex", "lpips_vgg", "encode_s", "decode_s"]

_state: dict = {}


def _init(args: argparse.Namespace) -> None:
    torch.set_num_threads(max(1, args.threads // max(1, args.workers)))
    _state["args"] = args
    # one thread per worker: pixels may differ from a multi-threaded decode in the last bit, see Codec
    _state["codec"] = Codec.from_pretrained(args.model, device=args.device, min_threads=torch.get_num_threads())
    _state["lpips"] = lpips_squeeze(args.lpips_backbone)
    _state["features"] = squeezenet_features(args.lpips_backbone)
    _state["extra_lpips"] = {f"lpips_{net}": lpips_with_backbone(net, path)
                             for net, path in (("alex", args.lpips_alex), ("vgg", args.lpips_vgg)) if path}
    _state["inception"] = inception_features(args.inception_weights) if args.inception_weights else None
    classical = available_codecs()
    _state["classical"] = [classical[c] for c in args.codecs if c in classical]


def _metrics(x: torch.Tensor, rec) -> dict:
    y = image_to_tensor(rec)
    with torch.inference_mode():
        out = {"psnr": float(psnr(x, y)[0]), "ms_ssim": float(ms_ssim(x, y)[0]),
               "lpips_squeeze": float(_state["lpips"](x, y).flatten()[0]), "lpips_alex": "", "lpips_vgg": ""}
        for name, metric in _state["extra_lpips"].items():
            out[name] = float(metric(x, y).flatten()[0])
    return out


def _patch_features(im) -> dict:
    """Feature sets of the image's 256×256 patches for the distribution metrics."""
    tiles = patches(image_to_tensor(im))
    feats = {"squeeze": _state["features"](tiles)}
    if _state["inception"] is not None:
        feats["inception"] = _state["inception"](tiles)
    return feats


def evaluate_image(path: Path) -> list[dict]:
    args, codec = _state["args"], _state["codec"]
    out_files = Path(args.out) / "files"
    image = load_image(path)
    x = image_to_tensor(image)
    pixels = image.width * image.height
    base = {"image": path.name, "width": image.width, "height": image.height}
    rows, targets = [], {}
    features = {"original": _patch_features(image)}
    for level in args.levels or codec.levels:
        t0 = time.perf_counter()
        data = codec.encode(image, level=level).data
        t1 = time.perf_counter()
        rec = codec.decode(data)
        t2 = time.perf_counter()
        (out_files / f"{path.stem}.L{level}.vqc").write_bytes(data)
        bpp = len(data) * 8 / pixels
        targets[level] = bpp
        features[(f"vqcodec:{codec.model_id}", level)] = _patch_features(rec)
        rows.append({**base, "codec": f"vqcodec:{codec.model_id}", "level": level, "target_bpp": bpp, "setting": level,
                     "scale": 1.0, "bytes": len(data), "bpp": bpp, **_metrics(x, rec), "encode_s": t1 - t0,
                     "decode_s": t2 - t1, "lowest_bpp": ""})
    trials = Trials(image)
    score = lambda rec: _metrics(x, rec)["lpips_squeeze"]  # noqa: E731
    for cc in _state["classical"]:
        lowest = trials.lowest_bpp(cc)
        for level, target in targets.items():
            for name, point in ((cc.name, trials.at_bpp(cc, target)),
                                (f"{cc.name}+resample", trials.resampled_at_bpp(cc, target, score))):
                row = {**base, "codec": name, "level": level, "target_bpp": target, "lowest_bpp": lowest}
                if point is None:
                    rows.append({**row, **{k: "" for k in FIELDS if k not in row}})
                    continue
                small = trials.small(point.scale)
                t0 = time.perf_counter()
                cc.encode(small, point.quality)
                t1 = time.perf_counter()
                rec = cc.decode(point.data)
                if rec.size != image.size:
                    rec = rec.resize(image.size)
                t2 = time.perf_counter()
                (out_files / f"{path.stem}.L{level}.{name}.{cc.pil_format.lower()}").write_bytes(point.data)
                features[(name, level)] = _patch_features(point.reconstruction)
                rows.append({**row, "setting": point.quality, "scale": point.scale, "bytes": len(point.data),
                             "bpp": point.bpp, **_metrics(x, point.reconstruction), "encode_s": t1 - t0,
                             "decode_s": t2 - t1})
    torch.save(features, Path(args.out) / "features" / f"{path.stem}.pt")
    return rows


def distribution_metrics(out: Path, groups: dict) -> dict:
    """KID-Squeeze (and FID with Inception weights) per (codec, level), over the images where the
    codec reached the target."""
    feats = {p.stem: torch.load(p, weights_only=True) for p in (out / "features").glob("*.pt")}
    result = {}
    for key, rs in groups.items():
        real, fake = defaultdict(list), defaultdict(list)
        for r in rs:
            f = feats.get(Path(r["image"]).stem, {})
            if r["bpp"] != "" and key in f:
                for kind in f[key]:
                    real[kind].append(f["original"][kind])
                    fake[kind].append(f[key][kind])
        result[key] = {
            "kid_squeeze": kid(torch.cat(real["squeeze"]), torch.cat(fake["squeeze"])) if real["squeeze"] else math.nan,
            "fid_inception": fid(torch.cat(real["inception"]), torch.cat(fake["inception"])) if real["inception"] else math.nan,
        }
    return result


def summarise(per_image: Path, out: Path) -> list[dict]:
    groups = defaultdict(list)
    with open(per_image) as f:
        for r in csv.DictReader(f):
            groups[(r["codec"], int(r["level"]))].append(r)
    dist = distribution_metrics(out, groups)
    summary = []
    for (codec, level), rs in sorted(groups.items(), key=lambda kv: (not kv[0][0].startswith("vqcodec"), kv[0][0], -kv[0][1])):
        reached = [r for r in rs if r["bpp"] != ""]
        entry = {"codec": codec, "level": level, "images": len(rs), "reached": len(reached),
                 "target_bpp": float(np.mean([float(r["target_bpp"]) for r in rs]))}
        for m in METRICS:
            vals = [float(r[m]) for r in reached if r[m] != ""]
            entry[m] = float(np.nanmean(vals)) if vals else math.nan
        lows = [float(r["lowest_bpp"]) for r in rs if r["lowest_bpp"] != ""]
        entry["lowest_bpp"] = float(np.mean(lows)) if lows else math.nan
        entry.update(dist[(codec, level)])
        summary.append(entry)
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def print_table(summary: list[dict]) -> None:
    print(f"{'codec':26}{'level':>6}{'target':>8}{'bpp':>8}{'PSNR':>7}{'MS-SSIM':>9}{'LPIPS-Sq':>9}{'KID-Sq':>9}"
          f"{'reached':>9}{'enc s':>7}{'dec s':>7}")
    for e in summary:
        print(f"{e['codec']:26}{e['level']:>6}{e['target_bpp']:>8.4f}{e['bpp']:>8.4f}{e['psnr']:>7.2f}"
              f"{e['ms_ssim']:>9.4f}{e['lpips_squeeze']:>9.4f}{e['kid_squeeze']:>9.3f}{e['reached']:>5}/{e['images']:<3}"
              f"{e['encode_s']:>7.2f}{e['decode_s']:>7.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder of images")
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--model", default=None, help="registered name or path (default: vqcodec-f16)")
    p.add_argument("--levels", type=int, nargs="*", help="vqcodec levels (default: all)")
    p.add_argument("--codecs", default="jpeg,webp,avif,heic,jxl",
                   help="classical codecs to compare, comma-separated ('' for none)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=2, help="processes (one image each at a time)")
    p.add_argument("--threads", type=int, default=2, help="torch threads in total")
    p.add_argument("--limit", type=int, help="evaluate at most N images not yet in per_image.csv (0: only summarise)")
    p.add_argument("--lpips-backbone", help="SqueezeNet-1.1 state dict (default: ../shared/weights)")
    p.add_argument("--lpips-alex", help="torchvision AlexNet ImageNet state dict: adds LPIPS-Alex")
    p.add_argument("--lpips-vgg", help="torchvision VGG16 ImageNet state dict: adds LPIPS-VGG")
    p.add_argument("--inception-weights", help="torchvision Inception-v3 ImageNet state dict: adds FID")
    args = p.parse_args(argv)
    missing = [flag for flag, given in (("--lpips-alex", args.lpips_alex), ("--lpips-vgg", args.lpips_vgg),
                                        ("--inception-weights", args.inception_weights)) if not given]
    if missing:
        print(f"skipping LPIPS-Alex/LPIPS-VGG/FID where no ImageNet weights were given ({', '.join(missing)}); "
              "they are never computed with random weights", file=sys.stderr)
    args.codecs = [c for c in args.codecs.split(",") if c]

    out = Path(args.out)
    (out / "files").mkdir(parents=True, exist_ok=True)
    (out / "features").mkdir(exist_ok=True)
    per_image = out / "per_image.csv"
    done: set[str] = set()
    if per_image.exists():
        with open(per_image) as f:
            done = {r["image"] for r in csv.DictReader(f)}
    images = [pth for pth in list_images(args.data) if pth.name not in done][: args.limit]
    new_file = not per_image.exists()
    with open(per_image, "a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if new_file:
            writer.writeheader()
        if args.workers > 1 and len(images) > 1:
            with mp.get_context("spawn").Pool(args.workers, initializer=_init, initargs=(args,)) as pool:
                for rows in tqdm(pool.imap_unordered(evaluate_image, images), total=len(images), unit="img"):
                    writer.writerows(rows)
                    f.flush()
        else:
            _init(args)
            for path in tqdm(images, unit="img"):
                writer.writerows(evaluate_image(path))
                f.flush()
    print_table(summarise(per_image, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
