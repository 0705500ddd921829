#!/usr/bin/env python
"""One command for the published results: evaluate, plot, and rewrite the results block of docs/evaluation.md.

    python scripts/report.py --data ../shared/data/kodak --name kodak

Runs ``scripts/evaluate.py`` (resumable) into ``results/<name>``, ``scripts/plot_rd.py``, copies the
RD plot to ``docs/img/rd_<name>.png`` and replaces the block (in ``--readme``, default docs/evaluation.md) between
``<!-- results:<name> -->`` and ``<!-- /results:<name> -->`` with the table: per vqcodec level, the
best classical codec at the same bpp (lowest LPIPS-Squeeze among those that reached the target
on every image, plain or resampled), and how far vqcodec is from the target of half its
LPIPS-Squeeze with PSNR at most 2 dB below. Metrics: PSNR, MS-SSIM, LPIPS-Squeeze (the model's
training loss, so it flatters vqcodec), KID-Squeeze and HaarPSI (network-free).

Options it does not know go to ``evaluate.py``; with ``--bpp-targets X ...`` the block
``<name>_rc`` gets the same comparison for vqcodec's rate control at each target:

    python scripts/report.py --data ../shared/data/kodak --name kodak --bpp-targets 0.01 0.02 0.03 0.04
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # importable by name, so evaluate's worker processes can find it

import evaluate  # noqa: E402
import plot_rd  # noqa: E402
from _readme import replace_block  # noqa: E402

METRIC_NOTE = ("LPIPS-Squeeze is the model's training loss (it flatters vqcodec); HaarPSI is computed without a "
               "network and no model here was trained on it.")


def _rc(e: dict) -> bool:
    """A rate-control point (vqcodec-rc or a classical codec matched to it), not a fixed level."""
    return e.get("rc_target") is not None


def _metrics(e: dict) -> str:
    return (f"{e['psnr']:.2f} | {e['ms_ssim']:.4f} | {e['lpips_squeeze']:.4f} | {e['kid_squeeze']:.3f} | "
            f"{e.get('haarpsi', math.nan):.4f}")


def _comparison(summary: list[dict], first: str, points: list[dict], same_point) -> str:
    """Rows of vqcodec ``points`` beside the best classical codec at ≤ the same bpp (lowest LPIPS-Squeeze
    among those that reached the target on every image); ``same_point(e, c)``: c was matched to e."""
    lines = [
        f"| {first} | bpp | PSNR | MS-SSIM | LPIPS-Sq | KID-Sq | HaarPSI | best classical at ≤ same bpp | its bpp | PSNR | "
        "MS-SSIM | LPIPS-Sq | KID-Sq | HaarPSI | LPIPS-Sq ratio (target ≤ 0.5) | ΔPSNR (target ≥ −2) | ΔHaarPSI |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    most = max((e["images"] for e in points), default=0)
    for e in points:
        rivals = [c for c in summary if not c["codec"].startswith("vqcodec") and same_point(e, c)
                  and c["reached"] == c["images"] and not math.isnan(c["lpips_squeeze"])]
        best = min(rivals, key=lambda c: c["lpips_squeeze"]) if rivals else None
        point = e["level"] if not _rc(e) else f"{e['rc_target']:g}"
        if evaluate.REALISM in e["codec"]:
            point = f"{point}, R={e['codec'].rsplit(evaluate.REALISM, 1)[1]}"
        if e["images"] < most:  # a resumable run stopped part-way: this row's means cover fewer images
            point = f"{point} ({e['images']} of {most} images)"
        row = f"| {point} | {e['bpp']:.4f} | {_metrics(e)} | "
        if best:
            row += (f"{best['codec']} | {best['bpp']:.4f} | {_metrics(best)} | "
                    f"{e['lpips_squeeze'] / best['lpips_squeeze']:.2f} | {e['psnr'] - best['psnr']:+.2f} | "
                    f"{e.get('haarpsi', math.nan) - best.get('haarpsi', math.nan):+.4f} |")
        else:
            row += "none reaches this bpp | | | | | | | | | | |"
        lines.append(row)
    return "\n".join(lines)


def table(summary: list[dict]) -> str:
    """Per fixed vqcodec level (high to low), vqcodec beside the best classical codec at ≤ its bpp."""
    vq = sorted((e for e in summary if e["codec"].startswith("vqcodec") and not _rc(e)),
                key=lambda e: (-e["level"], e["codec"]))
    return _comparison(summary, "level", vq, lambda e, c: not _rc(c) and c["level"] == e["level"])


def rc_table(summary: list[dict]) -> str:
    """Per rate-control target (low to high), vqcodec-rc beside the best classical codec at ≤ its files' bpp."""
    vq = sorted((e for e in summary if e["codec"].startswith(evaluate.RC) and _rc(e)),
                key=lambda e: (e["rc_target"], e["codec"]))
    return _comparison(summary, "target bpp", vq, lambda e, c: _rc(c) and c["rc_target"] == e["rc_target"])


def versus(summary: list[dict], baseline: list[dict]) -> str:
    """vqcodec's rate control here against the ``baseline`` run's, target by target."""
    def rc(entries: list[dict]) -> dict:
        return {e["rc_target"]: e for e in entries if e["codec"].startswith("vqcodec") and _rc(e)}

    ours, theirs = rc(summary), rc(baseline)
    lines = ["| target bpp | bpp | baseline bpp | PSNR | baseline | ΔPSNR | MS-SSIM | baseline | LPIPS-Sq | baseline | "
             "KID-Sq | baseline | HaarPSI | baseline |", "|---:" * 14 + "|"]
    for target in sorted(set(ours) & set(theirs)):
        a, b = ours[target], theirs[target]
        lines.append(f"| {target:g} | {a['bpp']:.4f} | {b['bpp']:.4f} | {a['psnr']:.2f} | {b['psnr']:.2f} | "
                     f"{a['psnr'] - b['psnr']:+.2f} | {a['ms_ssim']:.4f} | {b['ms_ssim']:.4f} | {a['lpips_squeeze']:.4f} | "
                     f"{b['lpips_squeeze']:.4f} | {a['kid_squeeze']:.3f} | {b['kid_squeeze']:.3f} | "
                     f"{a.get('haarpsi', math.nan):.4f} | {b.get('haarpsi', math.nan):.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--name", required=True, help="data set name: results/<name>, README block <name>")
    p.add_argument("--readme", default=str(ROOT / "docs" / "evaluation.md"), help="Markdown file whose results block is rewritten")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--sheet-image", default="kodim23.png", help="image for the visual comparison sheet")
    p.add_argument("--baseline", help="another results/<name> with the same rate-control targets: adds a table of the "
                                      "differences (e.g. adaptive granularity against --granularity 16)")
    args, rest = p.parse_known_args(argv)
    out = ROOT / "results" / args.name
    if evaluate.main(["--data", args.data, "--out", str(out), "--workers", str(args.workers), *rest]) != 0:
        return 1
    summary = json.loads((out / "summary.json").read_text())
    levels = sorted({e["level"] for e in summary if e["codec"].startswith("vqcodec") and not _rc(e)})
    sheet_level = levels[len(levels) // 2] if levels else None
    plot_args = ["--results", str(out), "--title", args.name]
    if (Path(args.data) / args.sheet_image).exists() and levels:
        plot_args += ["--image", args.sheet_image, "--level", str(sheet_level), "--data", args.data]
    plot_rd.main(plot_args)
    img = ROOT / "docs" / "img"
    img.mkdir(parents=True, exist_ok=True)
    if levels or any(_rc(e) for e in summary):
        shutil.copy(out / "rd.png", img / f"rd_{args.name}.png")
    sheet = out / f"sheet_{Path(args.sheet_image).stem}_L{sheet_level}.png"
    readme = Path(args.readme).resolve()
    rel = Path(os.path.relpath(img, readme.parent)).as_posix()
    counted = [e["images"] for e in summary if e["codec"].startswith("vqcodec")]
    note = f"Mean over {max(counted)} images; the command: `python scripts/report.py --data {args.data} --name {args.name}"
    shown = [a for i, a in enumerate(rest) if a != "--limit" and (i == 0 or rest[i - 1] != "--limit")]  # a rerun's
    note += "".join(f" {a}" for a in shown) + (f" --baseline {args.baseline}" if args.baseline else "") + "`. "
    note += METRIC_NOTE + "\n\n"
    if levels:
        block = f"{note}{table(summary)}\n\n![RD curves on {args.name}]({rel}/rd_{args.name}.png)\n"
        if sheet.exists():
            shutil.copy(sheet, img / f"sheet_{args.name}.png")
            block += f"\n![Same crop from every codec at level {sheet_level}'s bpp]({rel}/sheet_{args.name}.png)\n"
        replace_block(readme, args.name, block)
    if any(_rc(e) for e in summary):
        rc_note = note.replace("Mean over", "Rate control (`Codec.encode(image, bpp=target)`), mean over", 1)
        rc_block = f"{rc_note}{rc_table(summary)}\n"
        if args.baseline:
            base = json.loads((ROOT / "results" / args.baseline / "summary.json").read_text())
            rc_block += f"\nAgainst `{args.baseline}` (same images and targets):\n\n{versus(summary, base)}\n"
            ours = [e for e in summary if _rc(e) and (e["codec"].startswith("vqcodec") or "resample" in e["codec"])]
            theirs = [{**e, "codec": f"{e['codec']} ({args.baseline})"} for e in base if _rc(e) and e["codec"].startswith("vqcodec")]
            plot_rd.plot_curves(ours + theirs, img / f"rd_{args.name}.png", f"{args.name} against {args.baseline}", ("png",))
            rc_block += f"\n![{args.name} against {args.baseline}]({rel}/rd_{args.name}.png)\n"
        replace_block(readme, f"{args.name}_rc", rc_block, after=args.name)
    print(f"updated {readme} ({args.name}{f', {args.name}_rc' if any(_rc(e) for e in summary) else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
