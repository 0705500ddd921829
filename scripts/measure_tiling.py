"""Measure what tiling changes against whole-image processing, on real photos and the shipped model.

- indices: the share of indices identical to a whole-image encode (default level);
- seams: PSNR between a tiled and a whole-image decode of the same indices.

Each ``--encode`` value is ``TILE,HALO,HEAD_HALO`` and each ``--decode`` value ``TILE,HALO``, in
tokens (default: the codec's own). Tiles are forced even on grids the codec would run whole
(:data:`~vqcodec.codec.tiling.WHOLE_TOKENS`), so Kodak measures them too.
``--crop N`` takes the central N×N pixels (CLIC photos are too large to decode whole on a small
machine), or those centred at ``--centre FY,FX`` (fractions of the height and width)::

    nice python scripts/measure_tiling.py ../shared/data/kodak/*.png --decode 32,4 --decode 32,2

``--sheet PATH`` also writes a sheet that zooms into the corner where four decoder tiles meet
(192 × 192 pixels, shown at 2×), one row per image: the whole-image decode, each tiled decode,
and its difference from the whole decode amplified 16× (grey is zero)::

    python scripts/measure_tiling.py ../shared/data/clic/{aed95e00,2a2420f9}*.png --crop 1024 --centre 0.4,0.5 \
        --decode 32,4 --decode 32,2 --sheet docs/img/seams.png
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from PIL import Image, ImageDraw

from vqcodec import Codec
from vqcodec.codec.image_io import image_to_tensor, tensor_to_image
from vqcodec.codec.tiling import DECODE_HALO, DECODE_TILE, ENCODE_HALO, ENCODE_HEAD_HALO, ENCODE_TILE, Tiling
from vqcodec.metrics import psnr

WHOLE = Tiling(whole=1 << 32)


def numbers(text: str) -> tuple[int, ...]:
    return tuple(map(int, text.split(",")))


def load(path: str, crop: int | None, centre: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
    arr = np.asarray(Image.open(path).convert("RGB"))
    if crop:
        top, left = (min(max(0, round(c * n) - crop // 2), max(0, n - crop)) for c, n in zip(centre, arr.shape))
        arr = arr[top : top + crop, left : left + crop]
    return arr


ZOOM = 96  # pixels each side of the tile corner shown on the sheet
GAIN = 16  # amplification of the tiled-minus-whole difference on the sheet


def zoom(image: torch.Tensor, corner: tuple[int, int]) -> Image.Image:
    """The ``2·ZOOM`` square around ``corner`` (y, x) of a ``[1,3,H,W]`` decode, shown at 2×."""
    y, x = corner
    crop = tensor_to_image(image[0, :, y - ZOOM : y + ZOOM, x - ZOOM : x + ZOOM])
    return crop.resize((4 * ZOOM, 4 * ZOOM), Image.NEAREST)


def difference(tiled: torch.Tensor, whole: torch.Tensor) -> torch.Tensor:
    return (0.5 + GAIN * (tiled - whole)).clamp(0, 1)


def write_sheet(path: str, rows: list[tuple[str, list[tuple[str, Image.Image]]]]) -> None:
    side, label = 4 * ZOOM, 18
    columns = max(len(panels) for _, panels in rows)
    sheet = Image.new("RGB", (columns * (side + 4), len(rows) * (side + label + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, panels) in enumerate(rows):
        top = r * (side + label + 4)
        for c, (title, panel) in enumerate(panels):
            draw.text((c * (side + 4) + 4, top + 3), f"{name}: {title}" if c == 0 else title, fill="black")
            sheet.paste(panel, (c * (side + 4), top + label))
    sheet.save(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+")
    parser.add_argument("--encode", type=numbers, action="append",
                        help=f"TILE,HALO,HEAD_HALO (default {ENCODE_TILE},{ENCODE_HALO},{ENCODE_HEAD_HALO})")
    parser.add_argument("--decode", type=numbers, action="append", help=f"TILE,HALO (default {DECODE_TILE},{DECODE_HALO})")
    parser.add_argument("--crop", type=int)
    parser.add_argument("--centre", type=lambda t: tuple(map(float, t.split(","))), default=(0.5, 0.5), metavar="FY,FX",
                        help="where the crops are centred, as fractions of the height and width (default 0.5,0.5)")
    parser.add_argument("--level", type=int)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sheet", help="write a zoom into the corner where four decoder tiles meet")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    codec = Codec.from_pretrained(device="cpu")
    runner = codec.runner
    level = runner.level(args.level)
    encodes = args.encode or [(ENCODE_TILE, ENCODE_HALO, ENCODE_HEAD_HALO)]
    decodes = args.decode or [(DECODE_TILE, DECODE_HALO)]
    same = {e: [0, 0] for e in encodes}
    sheet_rows = []
    seams: dict[tuple[int, ...], list[float]] = {d: [] for d in decodes}
    for path in args.images:
        x = image_to_tensor(load(path, args.crop, args.centre))
        runner.tiling = WHOLE
        whole = runner.encode_indices(x, level)
        reference = runner.decode_indices(whole, level)
        row = {"image": path.rsplit("/", 1)[-1], "grid": list(whole.shape[1:])}
        corner = tuple(min(runner.factor * decodes[0][0], n - ZOOM) for n in reference.shape[-2:])
        panels = [("whole image", zoom(reference, corner))]
        for encode in encodes:
            runner.tiling = Tiling(0, *encode)
            equal = int((runner.encode_indices(x, level) == whole).sum())
            same[encode][0] += equal
            same[encode][1] += whole.numel()
            row["same@" + ",".join(map(str, encode))] = round(equal / whole.numel(), 5)
        for tile, halo in decodes:
            runner.tiling = Tiling(whole=0, decode_tile=tile, decode_halo=halo)
            tiled = runner.decode_indices(whole, level)
            value = float(psnr(tiled, reference))
            seams[tile, halo].append(value)
            row[f"psnr@{tile},{halo}"] = round(value, 2)
            panels += [(f"tile {tile}, halo {halo}: {value:.1f} dB", zoom(tiled, corner)),
                       (f"difference x{GAIN}", zoom(difference(tiled, reference), corner))]
        sheet_rows.append((row["image"][:12], panels))
        print(json.dumps(row), flush=True)
    if args.sheet:
        write_sheet(args.sheet, sheet_rows)
    for encode, (equal, total) in same.items():
        print(f"encode tile,halo,head halo {encode}: {equal}/{total} = {equal / total:.4%} indices identical to whole-image")
    for (tile, halo), values in seams.items():
        print(f"decode tile {tile} halo {halo}: PSNR tiled vs whole mean {np.mean(values):.2f} dB, min {np.min(values):.2f} dB")


if __name__ == "__main__":
    main()
