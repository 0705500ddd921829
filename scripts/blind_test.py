#!/usr/bin/env python
"""A blind side-by-side test: vqcodec against a classical codec with resampling, at no more bytes.

``make`` codes each photo whole at the default operating point (or ``--bpp``), finds the classical
codec's best downscale whose file is no larger (as ``realism_sheet.py`` does), and writes one
picture per crop: A, the original, B, with nothing that says which side is which. The sides are
drawn at random (``--seed``); ``key.csv`` records them and ``answers.csv`` waits for the rater's
choices (A, B, or = for no preference). ``tally`` then reads both:

    python scripts/blind_test.py make --data PHOTOS --out results/blind --bpp 0.03 \\
        --crop portrait:640:380 --crop sign:120:900 --crop sky:1200:100
    python scripts/blind_test.py tally results/blind

Hand the rater the ``pair-*.png`` files and ``answers.csv`` only, never ``key.csv``.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from realism_sheet import parse_crops, rows_for, sheet  # noqa: E402

from vqcodec import Codec  # noqa: E402
from vqcodec.evaluation.classical import available_codecs  # noqa: E402

CHOICES = {"A", "B", "="}


def make(args: argparse.Namespace) -> int:
    available = available_codecs()
    if args.codec not in available:
        raise SystemExit(f"codec not available here: {args.codec}")
    boxes = parse_crops(Path(args.data), args.crop)
    codec = Codec.from_pretrained(args.model, device="cpu")
    realism = [args.realism if codec.default_realism is not None else None]
    rng = random.Random(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key = []
    for path, where in boxes.items():
        rows = rows_for(codec, path, where, args.size, None, realism, [available[args.codec]], Path(args.cache),
                        args.bpp, [args.granularity], ["auto"])
        for (bx, by), row in zip(where, rows):
            original, ours = row[0][1], row[1]  # then its token map, if any, and the classical codec
            theirs = next((tile for tile in row if tile[0].startswith(f"{args.codec}+")), None)
            if theirs is None:
                print(f"{path.name}: {args.codec} has no file within vqcodec's bytes; crop skipped", file=sys.stderr)
                continue
            sides = [ours, theirs]
            rng.shuffle(sides)
            name = f"pair-{len(key) + 1:02d}.png"
            sheet([[("A", sides[0][1]), ("original", original), ("B", sides[1][1])]], args.size).save(out / name)
            key.append({"pair": name, "photo": path.name, "x": bx, "y": by, "A": sides[0][0], "B": sides[1][0]})
    with open(out / "key.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["pair", "photo", "x", "y", "A", "B"])
        writer.writeheader()
        writer.writerows(key)
    with open(out / "answers.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["pair", "choice"])
        writer.writerows([[k["pair"], ""] for k in key])
    print(f"wrote {len(key)} pairs to {out}: give the rater pair-*.png and answers.csv (A, B or =), then run tally")
    return 0


def tally(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    key = {row["pair"]: row for row in csv.DictReader(open(folder / "key.csv"))}
    ours = theirs = ties = 0
    for row in csv.DictReader(open(folder / args.answers)):
        choice = row["choice"].strip().upper()
        if row["pair"] not in key or choice not in CHOICES:
            raise SystemExit(f"{args.answers}: pair {row['pair']!r} has no key or choice {row['choice']!r} is not A, B or =")
        if choice == "=":
            ties += 1
        elif key[row["pair"]][choice].startswith("vqcodec"):
            ours += 1
        else:
            theirs += 1
    total = ours + theirs + ties
    if not total:
        raise SystemExit(f"{args.answers}: no answers")
    print(f"vqcodec preferred in {ours} of {total} pairs ({ours / total:.0%}), the classical codec in {theirs}, "
          f"no preference in {ties}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make", help="write the blind pairs, key.csv and an empty answers.csv")
    m.add_argument("--data", required=True, help="folder of the photos")
    m.add_argument("--crop", action="append", required=True, metavar="STEM:X:Y", help="a crop (repeat)")
    m.add_argument("--out", required=True, help="folder for the pairs")
    m.add_argument("--size", type=int, default=384, help="side of each crop in original pixels")
    m.add_argument("--bpp", type=float, help="rate control at this bpp (default: the model's default level)")
    m.add_argument("--granularity", default="adaptive", choices=["adaptive", "16"], help="vqcodec's token granularity")
    m.add_argument("--realism", type=float, default=0.5, help="vqcodec's fidelity-realism setting (default 0.5)")
    m.add_argument("--codec", default="heic", help="the classical codec, resampled (default heic)")
    m.add_argument("--model", help="registered name or path (default: vqcodec-f16)")
    m.add_argument("--cache", default="results/sheet_cache", help="classical files found, reused by later runs")
    m.add_argument("--seed", type=int, default=0, help="draws the sides")
    t = sub.add_parser("tally", help="count the rater's preferences")
    t.add_argument("folder", help="the folder make wrote")
    t.add_argument("--answers", default="answers.csv", help="the rater's file, in that folder")
    args = p.parse_args(argv)
    return make(args) if args.command == "make" else tally(args)


if __name__ == "__main__":
    raise SystemExit(main())
