#!/usr/bin/env python
"""Rate–distortion evaluation: vqcodec levels vs classical codecs at the same measured bpp.

For every image, each vqcodec level writes a real .vqc file; its measured bpp (file bytes × 8 /
pixels, header included) is the target for every classical codec, run two ways:

- ``<codec>``: full resolution, the highest quality whose file is not larger than the target
  (no row metrics when even the lowest quality is larger; its lowest reachable bpp is recorded);
- ``<codec>+resample``: downscale (LANCZOS) → encode → upscale, the scale chosen per image for
  the best LPIPS-Squeeze under the target.

With ``--realism R ...``, every vqcodec file is decoded at each fidelity–realism setting R (codec
``vqcodec:<model>@R<R>``); the files, and so the classical codecs' targets, are the same for all.

``--granularity 16`` codes every vqcodec file with the fixed f16 grid instead of the adaptive map,
and ``--tone off`` without a tone layer (write each setting to its own ``--out``).

With ``--bpp-targets X ...``, vqcodec also encodes every image with rate control,
``Codec.encode(image, bpp=X)`` (codec ``vqcodec-rc:<model>``, the target in ``rc_target``, the level
and scale rate control chose in ``level``/``scale``); its file's measured bpp is then the target of
the classical codecs exactly as for a fixed level (their rows carry the same ``rc_target``).

Metrics: PSNR (RGB), MS-SSIM (pytorch-msssim), LPIPS-Squeeze (the model's training loss),
HaarPSI (piq; Haar wavelets, no network, no model here trained on it), encode and decode time, and per
codec and level KID-Squeeze: the kernel inception distance between SqueezeNet features of 256×256
patches of the originals and of the reconstructions (a realism measure; Inception is not
available offline, so this is not comparable to published KID values). LPIPS-Alex, LPIPS-VGG and FID
(Inception-v3, 256×256 patches resized to 299) are computed only when you supply the ImageNet
weights (``--lpips-alex``, ``--lpips-vgg``, ``--inception-weights``); otherwise they are skipped
with one message, never computed with random weights. Results:
``<out>/per_image.csv`` (resumable: finished images are skipped; a new ``--bpp-targets`` value is
added to finished images), ``summary.csv``/``summary.json`` (means per codec and level, or per codec
and rate-control target, over the images where the codec reached the target). A ``per_image.csv``
from before HaarPSI gets the new columns, blank in its old rows: HaarPSI is missing there, not
recomputed, and a summary entry with any such row has no HaarPSI mean (NaN; move the folder
aside to recompute).

    python scripts/evaluate.py --data ../shared/data/kodak --out results/kodak
    python scripts/evaluate.py --data ../shared/data/kodak --out results/kodak --bpp-targets 0.01 0.02 0.03 0.04
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing as mp
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vqcodec import Codec  # noqa: E402
from vqcodec.codec.codec import DEFAULT_GRANULARITY, DEFAULT_TONE, GRANULARITIES, TONES  # noqa: E402
from vqcodec.codec.image_io import image_to_tensor, load_image  # noqa: E402
from vqcodec.errors import VQCodecError  # noqa: E402
from vqcodec.evaluation.classical import Trials, available_codecs  # noqa: E402
from vqcodec.metrics import (  # noqa: E402
    HAARPSI_MIN_SIDE,
    fid,
    haarpsi,
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
          "psnr", "ms_ssim", "lpips_squeeze", "lpips_alex", "lpips_vgg", "encode_s", "decode_s", "lowest_bpp",
          "haarpsi", "rc_target"]
METRICS = ["bpp", "psnr", "ms_ssim", "lpips_squeeze", "haarpsi", "lpips_alex", "lpips_vgg", "encode_s", "decode_s"]
RC = "vqcodec-rc"  # codec name prefix of the rate-controlled vqcodec rows
REALISM = "@R"  # codec name suffix of a decode at a chosen fidelity–realism setting


def codec_name(model_id: str, rate_control: bool, realism: float | None) -> str:
    name = f"{RC if rate_control else 'vqcodec'}:{model_id}"
    return name if realism is None else f"{name}{REALISM}{realism:g}"


def point_key(row: dict) -> tuple:
    """The operating point a per_image.csv row belongs to: ``(codec, level)``, or
    ``(codec, "rc", target)`` for rate control (vqcodec-rc and the classical codecs matched to it)."""
    if row.get("rc_target", "") not in ("", None):
        return (row["codec"], "rc", float(row["rc_target"]))
    return (row["codec"], int(row["level"]))


def _label(level: int | None, rc_target: float | None) -> str:
    """File-name part of an operating point: ``L64`` or ``R0p02`` (no extra dots)."""
    return f"L{level}" if rc_target is None else "R" + f"{rc_target:g}".replace(".", "p")

_state: dict = {}


def _init(args: argparse.Namespace) -> None:
    torch.set_num_threads(max(1, args.threads // max(1, args.workers)))
    _state["args"] = args
    # one thread per worker: pixels may differ from a multi-threaded decode in the last bit, see Codec
    _state["codec"] = Codec.from_pretrained(args.model, device=args.device, min_threads=torch.get_num_threads(),
                                            realism=args.realism_file or True)
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
               "lpips_squeeze": float(_state["lpips"](x, y).flatten()[0]), "lpips_alex": "", "lpips_vgg": "",
               "haarpsi": float(haarpsi(x, y)[0]) if min(x.shape[-2:]) >= HAARPSI_MIN_SIDE else ""}
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


def evaluate_image(job: Path | tuple[Path, bool, list[float]]) -> list[dict]:
    """Rows of one image: ``path``, or ``(path, fixed levels wanted, rate-control targets wanted)``."""
    path, with_levels, rc_targets = (job, True, _state["args"].bpp_targets or []) if isinstance(job, Path) else job
    args, codec = _state["args"], _state["codec"]
    out_files = Path(args.out) / "files"
    image = load_image(path)
    x = image_to_tensor(image)
    pixels = image.width * image.height
    base = {"image": path.name, "width": image.width, "height": image.height, "rc_target": ""}
    rows, targets = [], {}  # targets: (level, rc_target or None) → vqcodec's measured bpp, the classical codecs' budget
    features_file = Path(args.out) / "features" / f"{path.stem}.pt"
    features = torch.load(features_file, weights_only=True) if features_file.exists() else {}
    features["original"] = _patch_features(image)
    points = [(level, None) for level in ((codec.levels if args.levels is None else args.levels) if with_levels else [])]
    points += [(None, target) for target in rc_targets]
    for level, rc_target in points:
        t0 = time.perf_counter()
        try:
            point = {"level": level} if rc_target is None else {"bpp": rc_target}
            encoded = codec.encode(image, granularity=args.granularity, tone=args.tone, **point)
        except VQCodecError as e:  # a budget under every operating point: recorded, not reached
            if rc_target is None:
                raise
            print(f"{path.name} at {rc_target} bpp: {e}", file=sys.stderr)
            row = {**base, "codec": codec_name(codec.model_id, True, None), "level": "", "target_bpp": rc_target, "rc_target": rc_target}
            rows.append({**row, **{k: "" for k in FIELDS if k not in row}})
            continue
        data = encoded.data
        t1 = time.perf_counter()
        (out_files / f"{path.stem}.{_label(level, rc_target)}.vqc").write_bytes(data)
        bpp = len(data) * 8 / pixels
        targets[(encoded.header.level, rc_target)] = bpp
        for realism in args.realism or [None]:
            t2 = time.perf_counter()
            rec = codec.decode(data, realism=realism)
            t3 = time.perf_counter()
            row = {**base, "codec": codec_name(codec.model_id, rc_target is not None, realism),
                   "level": encoded.header.level, "target_bpp": bpp, "setting": encoded.header.level,
                   "scale": encoded.header.coded_size[0] / encoded.header.width, "bytes": len(data), "bpp": bpp,
                   **_metrics(x, rec), "encode_s": t1 - t0, "decode_s": t3 - t2,
                   "lowest_bpp": "", "rc_target": "" if rc_target is None else rc_target}
            features[point_key(row)] = _patch_features(rec)
            rows.append(row)
    trials = Trials(image)

    def score(rec) -> float:  # what picks the resampling scale: LPIPS-Squeeze alone
        with torch.inference_mode():
            return float(_state["lpips"](x, image_to_tensor(rec)).flatten()[0])

    for cc in _state["classical"]:
        lowest = trials.lowest_bpp(cc)
        for (level, rc_target), target in targets.items():  # level: the one rate control chose, for rc
            for name, point in ((cc.name, trials.at_bpp(cc, target)),
                                (f"{cc.name}+resample", trials.resampled_at_bpp(cc, target, score))):
                row = {**base, "codec": name, "level": level, "target_bpp": target, "lowest_bpp": lowest,
                       "rc_target": "" if rc_target is None else rc_target}
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
                label = _label(level, rc_target)
                (out_files / f"{path.stem}.{label}.{name}.{cc.pil_format.lower()}").write_bytes(point.data)
                row = {**row, "setting": point.quality, "scale": point.scale, "bytes": len(point.data),
                       "bpp": point.bpp, **_metrics(x, point.reconstruction), "encode_s": t1 - t0, "decode_s": t2 - t1}
                features[point_key(row)] = _patch_features(point.reconstruction)
                rows.append(row)
    torch.save(features, features_file)
    return rows


def distribution_metrics(out: Path, groups: dict) -> dict:
    """KID-Squeeze (and FID with Inception weights) per operating point (:func:`point_key`), over
    the images where the codec reached the target."""
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


def _order(key: tuple) -> tuple:
    """Fixed levels first (high to low), then rate control (low to high target); vqcodec first in each."""
    rc = len(key) == 3
    return (rc, not key[0].startswith("vqcodec"), key[0], key[2] if rc else -key[1])


def summarise(per_image: Path, out: Path) -> list[dict]:
    groups = defaultdict(list)
    with open(per_image) as f:
        for r in csv.DictReader(f):
            groups[point_key(r)].append(r)
    dist = distribution_metrics(out, groups)
    summary, incomplete = [], defaultdict(int)
    for key, rs in sorted(groups.items(), key=lambda kv: _order(kv[0])):
        reached = [r for r in rs if r["bpp"] != ""]
        rc_target = key[2] if len(key) == 3 else None
        entry = {"codec": key[0], "level": key[1] if rc_target is None else None, "rc_target": rc_target,
                 "images": len(rs), "reached": len(reached),
                 "target_bpp": float(np.mean([float(r["target_bpp"]) for r in rs]))}
        for m in METRICS:
            vals = [float(r[m]) for r in reached if r.get(m, "") != ""]
            # a mean over fewer images than the others' would not compare: NaN when any is missing
            entry[m] = float(np.nanmean(vals)) if vals and len(vals) == len(reached) else math.nan
            if vals and len(vals) < len(reached):
                incomplete[m] += len(reached) - len(vals)
        lows = [float(r["lowest_bpp"]) for r in rs if r["lowest_bpp"] != ""]
        entry["lowest_bpp"] = float(np.mean(lows)) if lows else math.nan
        entry.update(dist[key])
        summary.append(entry)
    missing_haarpsi = sum(r.get("haarpsi", "") == "" and r["bpp"] != "" for rs in groups.values() for r in rs)
    if missing_haarpsi:
        print(f"{missing_haarpsi} rows of {per_image} have no HaarPSI (written before it was measured, or images under "
              f"{HAARPSI_MIN_SIDE} px): their points' HaarPSI is NaN; move the folder aside to recompute them",
              file=sys.stderr)
    for m, n in incomplete.items():
        if m != "haarpsi":
            print(f"{n} rows lack {m} where others of their point have it: those points' {m} is NaN", file=sys.stderr)
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def print_table(summary: list[dict]) -> None:
    """One line per point; ``level`` is ``@X`` for the rate-control target X bpp."""
    print(f"{'codec':26}{'level':>7}{'target':>8}{'bpp':>8}{'PSNR':>7}{'MS-SSIM':>9}{'LPIPS-Sq':>9}{'HaarPSI':>9}"
          f"{'KID-Sq':>9}{'reached':>9}{'enc s':>7}{'dec s':>7}")
    for e in summary:
        point = e["level"] if e.get("rc_target") is None else f"@{e['rc_target']:g}"
        print(f"{e['codec']:26}{point:>7}{e['target_bpp']:>8.4f}{e['bpp']:>8.4f}{e['psnr']:>7.2f}"
              f"{e['ms_ssim']:>9.4f}{e['lpips_squeeze']:>9.4f}{e['haarpsi']:>9.4f}{e['kid_squeeze']:>9.3f}"
              f"{e['reached']:>5}/{e['images']:<3}{e['encode_s']:>7.2f}{e['decode_s']:>7.2f}")


def _upgrade(per_image: Path) -> None:
    """Give a per_image.csv from an older version the current columns; its rows get blanks there
    (HaarPSI missing, not recomputed; ``rc_target`` blank: fixed-level rows)."""
    with open(per_image, newline="") as f:
        reader = csv.DictReader(f)
        rows, header = list(reader), reader.fieldnames or []
    if header == FIELDS:
        return
    added = [k for k in FIELDS if k not in header]
    tmp = per_image.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, per_image)
    print(f"{per_image}: added columns {', '.join(added) or '(reordered)'}; blank in its {len(rows)} earlier rows",
          file=sys.stderr)


def _work_left(per_image: Path, images: list[Path], rc_targets: list[float]) -> list[tuple[Path, bool, list[float]]]:
    """Per image, what is not in per_image.csv yet: the fixed levels (all or none, as before) and
    each rate-control target. An image with fixed-level rows is never given more levels."""
    done: dict[str, set] = defaultdict(set)
    if per_image.exists():
        with open(per_image) as f:
            for r in csv.DictReader(f):
                if r["codec"].startswith("vqcodec"):
                    done[r["image"]].add(point_key(r)[2] if r.get("rc_target", "") != "" else "levels")
    jobs = []
    for path in images:
        job = (path, "levels" not in done[path.name], [t for t in rc_targets if t not in done[path.name]])
        if job[1] or job[2]:
            jobs.append(job)
    return jobs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder of images")
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--model", default=None, help="registered name or path (default: vqcodec-f16)")
    p.add_argument("--levels", type=int, nargs="*", help="vqcodec levels (default: all; none: rate control only)")
    p.add_argument("--bpp-targets", type=float, nargs="+", metavar="X",
                   help="also rate-controlled vqcodec (Codec.encode(image, bpp=X)) at each target, codec vqcodec-rc, "
                        "with the classical codecs matched to its files")
    p.add_argument("--realism", type=float, nargs="+", metavar="R",
                   help="decode every vqcodec file at each fidelity-realism setting R (default: the model's own)")
    p.add_argument("--realism-file", help="decoder endpoints to use instead of the model's own (build_realism.py)")
    p.add_argument("--granularity", choices=GRANULARITIES, default=DEFAULT_GRANULARITY,
                   help=f"vqcodec's token granularity (default {DEFAULT_GRANULARITY}); use one --out per setting")
    p.add_argument("--tone", choices=TONES, default=DEFAULT_TONE,
                   help=f"vqcodec's tone layer (default {DEFAULT_TONE}: rate control adds one when it wins; a fixed level adds none)")
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
    if any(not t > 0 for t in args.bpp_targets or []):
        p.error("--bpp-targets must be positive")
    args.bpp_targets = sorted(set(args.bpp_targets or []))

    out = Path(args.out)
    (out / "files").mkdir(parents=True, exist_ok=True)
    (out / "features").mkdir(exist_ok=True)
    per_image = out / "per_image.csv"
    if per_image.exists():
        _upgrade(per_image)
    images = _work_left(per_image, list_images(args.data), args.bpp_targets)[: args.limit]
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
