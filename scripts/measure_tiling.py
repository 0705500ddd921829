"""Measure what tiling changes against whole-image processing, on real photos and the shipped model.

- indices: the share of indices identical to a whole-image encode (default level);
- seams: PSNR between a tiled and a whole-image decode of the same indices.

Each ``--encode`` value is ``TILE,HALO,HEAD_HALO`` and each ``--decode`` value ``TILE,HALO``, in
tokens (default: the codec's own). Tiles are forced even on grids the codec would run whole
(:data:`~vqcodec.codec.tiling.WHOLE_TOKENS`), so Kodak measures them too.
``--crop N`` takes the central N×N pixels (CLIC photos are too large to decode whole on a small machine)::

    nice python scripts/measure_tiling.py ../shared/data/kodak/*.png --decode 32,4 --decode 32,2
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from PIL import Image

from vqcodec import Codec
from vqcodec.codec.image_io import image_to_tensor
from vqcodec.codec.tiling import DECODE_HALO, DECODE_TILE, ENCODE_HALO, ENCODE_HEAD_HALO, ENCODE_TILE, Tiling
from vqcodec.metrics import psnr

WHOLE = Tiling(whole=1 << 32)


def numbers(text: str) -> tuple[int, ...]:
    return tuple(map(int, text.split(",")))


def load(path: str, crop: int | None) -> np.ndarray:
    arr = np.asarray(Image.open(path).convert("RGB"))
    if crop:
        top, left = max(0, (arr.shape[0] - crop) // 2), max(0, (arr.shape[1] - crop) // 2)
        arr = arr[top : top + crop, left : left + crop]
    return arr


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+")
    parser.add_argument("--encode", type=numbers, action="append",
                        help=f"TILE,HALO,HEAD_HALO (default {ENCODE_TILE},{ENCODE_HALO},{ENCODE_HEAD_HALO})")
    parser.add_argument("--decode", type=numbers, action="append", help=f"TILE,HALO (default {DECODE_TILE},{DECODE_HALO})")
    parser.add_argument("--crop", type=int)
    parser.add_argument("--level", type=int)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    codec = Codec.from_pretrained(device="cpu")
    runner = codec.runner
    level = runner.level(args.level)
    encodes = args.encode or [(ENCODE_TILE, ENCODE_HALO, ENCODE_HEAD_HALO)]
    decodes = args.decode or [(DECODE_TILE, DECODE_HALO)]
    same = {e: [0, 0] for e in encodes}
    seams: dict[tuple[int, ...], list[float]] = {d: [] for d in decodes}
    for path in args.images:
        x = image_to_tensor(load(path, args.crop))
        runner.tiling = WHOLE
        whole = runner.encode_indices(x, level)
        reference = runner.decode_indices(whole, level)
        row = {"image": path.rsplit("/", 1)[-1], "grid": list(whole.shape[1:])}
        for encode in encodes:
            runner.tiling = Tiling(0, *encode)
            equal = int((runner.encode_indices(x, level) == whole).sum())
            same[encode][0] += equal
            same[encode][1] += whole.numel()
            row["same@" + ",".join(map(str, encode))] = round(equal / whole.numel(), 5)
        for tile, halo in decodes:
            runner.tiling = Tiling(whole=0, decode_tile=tile, decode_halo=halo)
            value = float(psnr(runner.decode_indices(whole, level), reference))
            seams[tile, halo].append(value)
            row[f"psnr@{tile},{halo}"] = round(value, 2)
        print(json.dumps(row), flush=True)
    for encode, (equal, total) in same.items():
        print(f"encode tile,halo,head halo {encode}: {equal}/{total} = {equal / total:.4%} indices identical to whole-image")
    for (tile, halo), values in seams.items():
        print(f"decode tile {tile} halo {halo}: PSNR tiled vs whole mean {np.mean(values):.2f} dB, min {np.min(values):.2f} dB")


if __name__ == "__main__":
    main()
