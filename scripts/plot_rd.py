#!/usr/bin/env python
"""Rate–distortion plots and a visual comparison sheet from ``scripts/evaluate.py`` results.

    python scripts/plot_rd.py --results results/kodak [--image kodim23.png] [--level 256]

Writes ``rd.png``/``rd.svg`` (bpp vs PSNR, MS-SSIM, LPIPS-Squeeze and HaarPSI, one curve per codec;
rate-controlled vqcodec, ``vqcodec-rc``, is its own curve, and a classical codec's curve is its
points matched to the fixed levels, or to rate control when there are no fixed levels) and
``sheet_<image>.png`` (the same crop from every codec at one vqcodec level's bpp).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PANELS = [("psnr", "PSNR (dB) ↑"), ("ms_ssim", "MS-SSIM ↑"), ("lpips_squeeze", "LPIPS-Squeeze (training loss) ↓"),
          ("haarpsi", "HaarPSI (no network) ↑")]


def plot_curves(summary: list[dict], out: Path, title: str, formats: tuple[str, ...] = ("png", "svg")) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fixed: dict[str, list[dict]] = {}
    rc: dict[str, list[dict]] = {}
    for e in summary:
        if e["reached"] == e["images"] and not math.isnan(e["bpp"]):
            (rc if e.get("rc_target") is not None else fixed).setdefault(e["codec"], []).append(e)
    curves = {**rc, **fixed}  # classical codecs: the fixed-level matches when there are any
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5.3 * len(PANELS), 4.8))
    for ax, (metric, label) in zip(axes, PANELS):
        for name, pts in sorted(curves.items()):
            pts = sorted(pts, key=lambda e: e["bpp"])
            vq = name.startswith("vqcodec")
            ax.plot([p["bpp"] for p in pts], [p.get(metric, math.nan) for p in pts],
                    marker=("s" if name in rc else "o") if vq else ".",
                    linewidth=2.5 if vq else 1.2, linestyle="-" if vq or "resample" in name else "--", label=name)
        ax.set_xlabel("bits per pixel (measured file size)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    for ext in formats:
        fig.savefig(out.with_suffix(f".{ext}"), dpi=110)
    plt.close(fig)


def comparison_sheet(results: Path, image_name: str, level: int, data_dir: Path, out: Path, model: str | None) -> None:
    """Crops of one image: original, vqcodec at ``level``, and each resampled classical codec at that bpp."""
    from PIL import Image, ImageDraw

    import vqcodec
    from vqcodec.evaluation.classical import available_codecs

    stem = Path(image_name).stem
    original = Image.open(data_dir / image_name).convert("RGB")
    w, h = original.size
    box = (w // 2 - 128, h // 2 - 128, w // 2 + 128, h // 2 + 128)
    tiles = [("original", original)]
    vqc = results / "files" / f"{stem}.L{level}.vqc"
    data = vqc.read_bytes()
    tiles.append((f"vqcodec L{level} {len(data) * 8 / (w * h):.4f} bpp", vqcodec.decode(data, model=model, device="cpu")))
    codecs = available_codecs()
    for path in sorted((results / "files").glob(f"{stem}.L{level}.*+resample.*")):
        name = path.name.split(".")[2].replace("+resample", "")
        im = codecs[name].decode(path.read_bytes()).resize((w, h), Image.LANCZOS)
        tiles.append((f"{name}+resample {path.stat().st_size * 8 / (w * h):.4f} bpp", im))
    sheet = Image.new("RGB", (256 * len(tiles), 276), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, im) in enumerate(tiles):
        sheet.paste(im.crop(box), (256 * i, 20))
        draw.text((256 * i + 4, 4), label, fill="black")
    sheet.save(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", required=True, help="folder written by scripts/evaluate.py")
    p.add_argument("--title", default="Kodak")
    p.add_argument("--image", help="image for the comparison sheet (e.g. kodim23.png)")
    p.add_argument("--level", type=int, help="vqcodec level for the sheet")
    p.add_argument("--data", help="folder with the original images (for the sheet)")
    p.add_argument("--model", help="model that wrote the .vqc files, if not the one named in them")
    args = p.parse_args(argv)
    results = Path(args.results)
    summary = json.loads((results / "summary.json").read_text())
    plot_curves(summary, results / "rd", args.title)
    print(f"wrote {results / 'rd.png'} and rd.svg")
    if args.image and args.level and args.data:
        out = results / f"sheet_{Path(args.image).stem}_L{args.level}.png"
        comparison_sheet(results, args.image, args.level, Path(args.data), out, args.model)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
