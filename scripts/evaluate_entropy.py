#!/usr/bin/env python
"""Bits per level, static prior against context model, as real file sizes; and what each costs in time.

Every photo is encoded once per scale (all levels from one encoder pass); each level's grid is then
written as a whole ``.vqc`` file with each entropy model and decoded back, checking that the
indices (and so the pixels) are identical. Times are the entropy stage alone (index grid ↔ bytes)
and the whole decode of the file, on this machine's CPU (``--threads``) or GPU (``--device``).

    python scripts/evaluate_entropy.py ../shared/data/kodak --out results/entropy_kodak.json
    python scripts/evaluate_entropy.py ../shared/data/clic --scale 0.5 --out results/entropy_clic.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/ is not a package

from _readme import replace_block  # noqa: E402

from vqcodec import Codec  # noqa: E402
from vqcodec.codec import container, payload  # noqa: E402
from vqcodec.codec.image_io import image_to_tensor, load_image, resample  # noqa: E402
from vqcodec.codec.rate import coded_size  # noqa: E402
from vqcodec.training.data import list_images  # noqa: E402

KINDS = ("static", "context")


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def measure(
    codec: Codec, files: list[Path], scale: float, levels: list[int], packets: int, packet_levels: list[int],
    decode_level: int,
) -> dict:
    rows: dict[int, dict[str, list[float]]] = {level: {} for level in levels}
    for path in tqdm(files, desc="photos", unit="img"):
        image = np.asarray(load_image(path))
        height, width = image.shape[:2]
        size = coded_size(width, height, scale)
        coded = image if size == (width, height) else np.asarray(resample(image, size))
        grids = codec.runner.encode_levels(image_to_tensor(coded), levels)
        for level in levels:
            grid = grids[level][0].numpy()
            row = rows[level]
            row.setdefault("pixels", []).append(width * height)
            for kind in KINDS:
                for label, count in (("", None), ("packets_", packets))[: 2 if level in packet_levels else 1]:
                    encoded, t_enc = _timed(codec.pack, grid, level, (width, height), size, count, entropy=kind)
                    stream = container.read(encoded.data)
                    model = codec.check_compatible(stream.header)
                    decoded, t_dec = _timed(payload.read, stream, model)
                    if not (decoded.known.all() and np.array_equal(decoded.indices, grid)):
                        raise SystemExit(f"{path.name} level {level} {kind}: indices differ after decoding")
                    row.setdefault(f"{label}{kind}_bytes", []).append(len(encoded.data))
                    if not label:
                        row.setdefault(f"{kind}_encode_s", []).append(t_enc)
                        row.setdefault(f"{kind}_decode_s", []).append(t_dec)
                        if level == decode_level:
                            _, t_full = _timed(codec.decode, encoded.data)
                            row.setdefault(f"{kind}_full_decode_s", []).append(t_full)
    out = {}
    for level, row in rows.items():
        pixels = sum(row["pixels"])
        summary = {f"{kind}_bpp": 8 * sum(row[f"{kind}_bytes"]) / pixels for kind in KINDS}
        summary["saving"] = 1 - sum(row["context_bytes"]) / sum(row["static_bytes"])
        if "packets_context_bytes" in row:
            summary["packets_saving"] = 1 - sum(row["packets_context_bytes"]) / sum(row["packets_static_bytes"])
            summary["packets_cost"] = sum(row["packets_context_bytes"]) / sum(row["context_bytes"]) - 1
        for key in [k for k in row if k.endswith("_s")]:
            summary[key] = statistics.median(row[key])
        out[level] = summary
    return out


def table(results: dict, packets: int) -> str:
    lines = [
        "| level | static bpp | context bpp | saved | entropy encode static / context | entropy decode static / context |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for level, r in sorted(results.items(), key=lambda kv: -int(kv[0])):
        lines.append(
            f"| {level} | {r['static_bpp']:.4f} | {r['context_bpp']:.4f} | {100 * r['saving']:.1f} % | "
            f"{1000 * r['static_encode_s']:.1f} / {1000 * r['context_encode_s']:.0f} ms | "
            f"{1000 * r['static_decode_s']:.1f} / {1000 * r['context_decode_s']:.0f} ms |"
        )
    lines.append("")
    lines.append(f"- With {packets} packets (each coded from its own positions): " + ", ".join(
        f"level {level} saves {100 * r['packets_saving']:.1f} % (packetizing costs {100 * r['packets_cost']:.1f} % "
        "over the plain context file)" for level, r in sorted(results.items(), key=lambda kv: -int(kv[0]))
        if "packets_saving" in r))
    full = [(level, r) for level, r in results.items() if "context_full_decode_s" in r]
    for level, r in full:
        lines.append(f"- Whole decode at level {level}: static {r['static_full_decode_s']:.2f} s, context "
                     f"{r['context_full_decode_s']:.2f} s ({r['context_full_decode_s'] / r['static_full_decode_s']:.2f}x), "
                     "median per photo.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="folder of photos (Kodak, CLIC: evaluation only)")
    p.add_argument("--model", default="vqcodec-f16")
    p.add_argument("--context", help="context tables to use (default: the model's own)")
    p.add_argument("--scale", type=float, default=1.0, help="code the photos at this fraction of their size")
    p.add_argument("--levels", help="comma-separated levels (default: all)")
    p.add_argument("--packets", type=int, default=16, help="packet count for the packetization cost")
    p.add_argument("--packet-levels", default="1024", help="levels whose packetized files are measured too")
    p.add_argument("--decode-level", type=int, default=1024, help="level whose whole decode is timed")
    p.add_argument("--limit", type=int, help="only the first N photos")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="JSON file for the results")
    p.add_argument("--readme", help="Markdown file whose block results:entropy-<name> gets the table")
    p.add_argument("--name", help="data set name for --readme (default: the folder's name)")
    p.add_argument("--from-json", help="skip measuring: print (and --readme) the table of this earlier --out")
    args = p.parse_args(argv)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        _publish(saved, args)
        return 0
    torch.set_num_threads(args.threads)
    codec = Codec.from_pretrained(args.model, device=args.device, context=args.context or True)
    if codec.entropy.context is None:
        p.error("the model has no context model (train one with scripts/train_context.py)")
    levels = [int(x) for x in args.levels.split(",")] if args.levels else codec.levels
    files = list_images(args.data)[: args.limit]
    packet_levels = [int(x) for x in args.packet_levels.split(",")]
    results = measure(codec, files, args.scale, levels, args.packets, packet_levels, args.decode_level)
    saved = {"data": args.data, "scale": args.scale, "photos": len(files), "threads": args.threads,
             "device": args.device, "packets": args.packets, "levels": results}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(saved, indent=1))
    _publish(saved, args)
    return 0


def _publish(saved: dict, args: argparse.Namespace) -> None:
    text = table(saved["levels"], saved["packets"])
    print(text)
    if args.readme:
        name = args.name or Path(saved["data"]).name
        scale = f", coded at scale {saved['scale']:g}" if saved["scale"] != 1 else ""
        command = f"`python scripts/evaluate_entropy.py {saved['data']}" + (f" --scale {saved['scale']:g}" if scale else "") + "`"
        head = f"{name} ({saved['photos']} photos{scale}; {saved['threads']} threads on {saved['device']}): {command}\n\n"
        replace_block(args.readme, f"entropy-{name}", head + text + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
