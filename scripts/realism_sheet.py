#!/usr/bin/env python
"""Comparison sheet for the eye: crops of faces, skin, text, skies and foliage, vqcodec at several
fidelity–realism settings or token granularities beside HEIC and AVIF with resampling at ≤ the same bytes.

    python scripts/realism_sheet.py --data ../shared/data/clic --out docs/img/realism_clic.png \\
        --crop 100f1789:384:640 --crop 2a2420f9:448:200 --crop 4cd6910a:300:64 \\
        --crop 22ea12c9:896:64 --crop aed95e00:1280:384 --crop 7e499613:512:1500

Each ``--crop STEM:X:Y`` names an image (its file-name stem, or a unique prefix of it) and the top
left corner of a ``--size`` square in the original's pixels. The whole photo is coded, not the
crop: vqcodec at ``--level`` (default: the model's), decoded at every ``--realism`` setting, and
each classical codec at the highest quality and the best PSNR over downscales whose file is no
larger than vqcodec's (kept in ``--cache``: rerunning with other decoders does not search again).
The label under each tile gives the codec, its downscale and its bpp.

``--bpp X`` codes each photo with rate control instead, once per ``--granularity`` (adaptive, 16)
and ``--tone`` setting (auto, on, off), and adds a tile with each adaptive file's granularity map
drawn over its decode (blue: a token per 64 coded pixels, yellow: per 32, red tint: per 16); the
classical codecs match the largest file:

    python scripts/realism_sheet.py --data ../shared/data/kodak --out docs/img/granularity_kodak.jpg \\
        --bpp 0.02 --granularity 16 adaptive --realism 0.5 --crop kodim04:200:60 --crop kodim23:280:0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vqcodec import Codec  # noqa: E402
from vqcodec.codec import granularity  # noqa: E402
from vqcodec.codec.codec import EncodedImage  # noqa: E402
from vqcodec.codec.image_io import image_to_tensor  # noqa: E402
from vqcodec.evaluation.classical import ClassicalCodec, Trials, available_codecs  # noqa: E402
from vqcodec.metrics import psnr  # noqa: E402

LABEL = 18  # pixels of caption under each tile


def _find(data: Path, stem: str) -> Path:
    matches = sorted(p for p in data.iterdir() if p.stem.startswith(stem))
    if len(matches) != 1:
        raise SystemExit(f"--crop {stem}: {len(matches)} images in {data} start with that name")
    return matches[0]


def parse_crops(data: Path, specs: list[str]) -> dict[Path, list[tuple[int, int]]]:
    """``--crop STEM:X:Y`` arguments → each photo's crop corners."""
    boxes: dict[Path, list[tuple[int, int]]] = {}
    for spec in specs:
        try:
            stem, bx, by = spec.rsplit(":", 2)
            boxes.setdefault(_find(data, stem), []).append((int(bx), int(by)))
        except ValueError:
            raise SystemExit(f"--crop {spec!r}: expected STEM:X:Y") from None
    return boxes


def classical_file(image: Image.Image, trials: Trials, codec: ClassicalCodec, budget_bytes: int,
                   cache: Path) -> tuple[bytes, float] | None:
    """The classical codec's file and scale for the image within the budget, searched once: the
    decoder settings change between runs, the classical files do not."""
    found = sorted(cache.glob(f"{codec.name}.{budget_bytes}.*.bin"))
    if found:
        return found[0].read_bytes(), float(found[0].name.split(".", 2)[2][: -len(".bin")])
    x = image_to_tensor(np.asarray(image))
    point = trials.resampled_at_bpp(codec, budget_bytes * 8 / (image.width * image.height),
                                    lambda rec: -float(psnr(x, image_to_tensor(np.asarray(rec)))[0]))
    if point is None:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    (cache / f"{codec.name}.{budget_bytes}.{point.scale}.bin").write_bytes(point.data)
    return point.data, point.scale


def map_overlay(image: Image.Image, encoded: EncodedImage) -> Image.Image:
    """``image`` with the file's token squares drawn over it, in the original's pixels."""
    h = encoded.header
    grain = granularity.granularity_of(granularity.decode_map(h.granularity_map, h.grid_height, h.grid_width),
                                       h.grid_height, h.grid_width) if h.granularity_map else None
    out = image.copy()
    if grain is None:
        return out
    sx, sy = h.factor * image.width / h.coded_size[0], h.factor * image.height / h.coded_size[1]
    tint = Image.new("RGB", image.size, (255, 0, 0))
    fine = Image.new("L", image.size, 0)
    draw_fine = ImageDraw.Draw(fine)
    draw = ImageDraw.Draw(out)
    colours = {2: (255, 210, 0), 4: (0, 120, 255)}
    for r, c in zip(*np.nonzero(grain)):
        g = int(grain[r, c])
        if r % g or c % g:
            continue  # not an anchor
        box = (round(c * sx), round(r * sy), round((c + g) * sx) - 1, round((r + g) * sy) - 1)
        if g == 1:
            draw_fine.rectangle(box, fill=70)
        else:
            draw.rectangle(box, outline=colours[g])
    return Image.composite(tint, out, fine)


def rows_for(codec: Codec, path: Path, boxes: list[tuple[int, int]], size: int, level: int | None,
             realism: list[float | None], codecs: list[ClassicalCodec], cache: Path, bpp: float | None = None,
             granularities: list[str] = ("16",), tones: list[str] = ("auto",),
             keep: Path | None = None, reuse: bool = False) -> list[list[tuple[str, Image.Image]]]:
    """Per crop box: ``(label, crop)`` for the original, each vqcodec setting and each classical codec;
    labels give each whole picture's bpp and PSNR. ``keep``: a folder for the vqcodec files; with
    ``reuse``, a file already there is decoded instead of encoding the photo again."""
    image = Image.open(path).convert("RGB")
    pixels = image.width * image.height
    tiles = [("original", image)]
    files = []
    for g in granularities:
        for t in tones:
            point = {"bpp": bpp} if bpp is not None else {"level": level}
            kept = None if keep is None else keep / f"{path.stem}.{g}.tone-{t}.vqc"
            if reuse and kept is not None and kept.exists():
                encoded = EncodedImage.from_bytes(kept.read_bytes())
            else:
                encoded = codec.encode(image, granularity=g, tone=t, **point)
                if kept is not None:
                    kept.parent.mkdir(parents=True, exist_ok=True)
                    kept.write_bytes(encoded.data)
            files.append(encoded)
            name = " ".join(["vqcodec"] + ([{"16": "f16 grid", "adaptive": "adaptive"}[g]] if len(granularities) > 1 else [])
                            + ([f"tone {'layer' if encoded.header.tone else 'none'}"] if len(tones) > 1 else []))
            tiles += _decodes(codec, encoded, name, realism, with_map=g == "adaptive", original=image)
    trials = Trials(image)
    budget = max(len(f.data) for f in files)
    for classical in codecs:
        found = classical_file(image, trials, classical, budget, cache / path.stem)
        if found is not None:
            data, scale = found
            rec = classical.decode(data).resize(image.size, Image.LANCZOS)
            tiles.append((f"{classical.name}+resample x{scale:g} {len(data) * 8 / pixels:.4f} {_psnr(image, rec):.2f} dB", rec))
    return [[(label, im.crop((bx, by, bx + size, by + size))) for label, im in tiles] for bx, by in boxes]


def _psnr(image: Image.Image, decoded: Image.Image) -> float:
    return float(psnr(image_to_tensor(np.asarray(decoded)), image_to_tensor(np.asarray(image)))[0])


def _decodes(codec: Codec, encoded: EncodedImage, name: str, realism: list[float | None], with_map: bool,
             original: Image.Image) -> list[tuple[str, Image.Image]]:
    tiles = []
    for r in realism:
        setting = "" if r is None else f" R={r:g}"
        decoded = codec.decode(encoded.data, realism=r)
        tiles.append((f"{name}{setting} {encoded.bpp:.4f} {_psnr(original, decoded):.2f} dB", decoded))
    if with_map and encoded.header.granularity_map:
        tiles.append(("its token map", map_overlay(tiles[-1][1], encoded)))
    return tiles


def sheet(rows: list[list[tuple[str, Image.Image]]], size: int) -> Image.Image:
    columns = max(len(r) for r in rows)
    out = Image.new("RGB", (columns * (size + 4), len(rows) * (size + LABEL + 4)), "white")
    draw = ImageDraw.Draw(out)
    for i, row in enumerate(rows):
        for j, (label, tile) in enumerate(row):
            x, y = j * (size + 4), i * (size + LABEL + 4)
            out.paste(tile, (x, y))
            draw.text((x + 4, y + size + 3), label, fill="black")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder of the photos")
    p.add_argument("--crop", action="append", required=True, metavar="STEM:X:Y", help="a crop (repeat)")
    p.add_argument("--size", type=int, default=384, help="side of each crop in original pixels")
    p.add_argument("--level", type=int, help="vqcodec level (default: the model's)")
    p.add_argument("--bpp", type=float, help="rate control at this bpp instead of a level")
    p.add_argument("--granularity", nargs="+", default=["16"], choices=["16", "adaptive"],
                   help="token granularities to show (default: 16)")
    p.add_argument("--tone", nargs="+", default=["auto"], choices=["auto", "on", "off"],
                   help="tone-layer settings to show (default: auto)")
    p.add_argument("--realism", type=float, nargs="+", default=[0.0, 1.0], help="decoder settings to show")
    p.add_argument("--codecs", default="heic,avif", help="classical codecs, comma-separated")
    p.add_argument("--model", help="registered name or path (default: vqcodec-f16)")
    p.add_argument("--realism-file", help="decoder endpoints to use instead of the model's own (build_realism.py)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--cache", default="results/sheet_cache", help="classical files found, reused by later runs")
    p.add_argument("--keep", help="also write each vqcodec file into this folder")
    p.add_argument("--reuse", action="store_true",
                   help="decode the files already in --keep instead of encoding again (other crops or decoders; "
                        "delete the folder after changing the encoder, --bpp or --level)")
    args = p.parse_args(argv)
    if args.reuse and not args.keep:
        p.error("--reuse needs --keep")
    available = available_codecs()
    names = [c for c in args.codecs.split(",") if c]
    missing = sorted(set(names) - set(available))
    if missing:
        raise SystemExit(f"codecs not available here: {', '.join(missing)}")
    codecs = [available[c] for c in names]
    boxes = parse_crops(Path(args.data), args.crop)
    codec = Codec.from_pretrained(args.model, device="cpu", realism=args.realism_file or True)
    realism = args.realism if codec.default_realism is not None else [None]  # a single-decoder model has no knob
    rows = []
    for path, where in tqdm(boxes.items(), unit="photo"):
        rows += rows_for(codec, path, where, args.size, args.level, realism, codecs, Path(args.cache),
                         args.bpp, args.granularity, args.tone, Path(args.keep) if args.keep else None, args.reuse)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet(rows, args.size).save(args.out, quality=92)  # JPEG: small enough for the docs; PNG ignores it
    print(f"wrote {args.out}: {len(rows)} crops")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
