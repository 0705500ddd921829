#!/usr/bin/env python
"""Where a model loses fidelity, and whether its decodes carry a periodic grid.

    python scripts/diagnose.py --data ../shared/data/kodak --out results/diagnose_kodak
    python scripts/diagnose.py --data ../shared/data/clic --crop 768 --limit 8 --out results/diagnose_clic
    python scripts/diagnose.py --data ../shared/data/kodak --out results/diagnose_knob --levels 1024 --realism 0 0.5 1

For each image: the unquantized ceiling (``decode_latent(encode_latent(x))``), the full codebook
and every level (or ``--levels``), each scored by PSNR and LPIPS-Squeeze (the training loss) and by
*grid excess*: how much more the decode's luma power exceeds the original's on the harmonics
of period p (k/p cycles per pixel for odd k, in x and y: those p/2 does not have) than on the
lines halfway between them, in dB. A
halftone-like dot grid of period p shows as a large excess at p; an upsampling stage of factor p
that leaves a checkerboard puts it at p = 2, 4, 8; the 16×16 token grid at p = 16.
The gap between the unquantized ceiling and the levels says what the codebook costs; the
ceiling's own distance to the original, what the autoencoder costs. ``--realism R ...`` measures
every condition at each fidelity–realism setting of the decoder; ``--realism-file`` tries decoder
endpoints before they ship (``scripts/build_realism.py`` makes one from training checkpoints).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vqcodec import Codec  # noqa: E402
from vqcodec.codec.image_io import image_to_tensor, load_image  # noqa: E402
from vqcodec.metrics import lpips_squeeze, psnr  # noqa: E402
from vqcodec.training.data import list_images  # noqa: E402

PERIODS = (2, 4, 8, 16)


def luma(x: torch.Tensor) -> np.ndarray:
    """``[1,3,H,W]`` in [0,1] → BT.601 luma ``[H,W]`` as float64."""
    r, g, b = x[0].double().numpy()
    return 0.299 * r + 0.587 * g + 0.114 * b


def line_power(spectrum: np.ndarray, period: int, offset: float) -> float:
    """Power on the spectrum's rows and columns at (k + offset)/period cycles per pixel for odd k < period:
    the harmonics that period p has and p/2 has not (so p = 16 is the token grid alone)."""
    h, w = spectrum.shape
    ks = [k + offset for k in range(1, period, 2)]
    rows = sorted({round(k * h / period) % h for k in ks})
    cols = sorted({round(k * w / period) % w for k in ks})
    return float(spectrum[rows, :].sum() + spectrum[:, cols].sum())


def grid_excess(decoded: torch.Tensor, original: torch.Tensor) -> dict[int, float]:
    """Per period p: how much more the decode's luma power exceeds the original's on the harmonics
    k/p than on the lines halfway between them, in dB. Texture or noise raise both alike (≈ 0 dB);
    a periodic pattern of period p raises only the harmonics."""
    spectra = [np.abs(np.fft.fft2(y - y.mean())) ** 2 for y in (luma(decoded), luma(original))]
    out = {}
    for p in PERIODS:
        on = [line_power(s, p, 0.0) + 1e-9 for s in spectra]
        off = [line_power(s, p, 0.5) + 1e-9 for s in spectra]
        out[p] = 10 * np.log10(on[0] / on[1]) - 10 * np.log10(off[0] / off[1])
    return out


def load(path: Path, crop: int | None) -> torch.Tensor:
    """The image as ``[1,3,H,W]``, center-cropped to ``crop`` and to a multiple of 16."""
    x = image_to_tensor(load_image(path))
    h, w = x.shape[-2:]
    size_h, size_w = (min(crop, h), min(crop, w)) if crop else (h, w)
    size_h, size_w = size_h - size_h % 16, size_w - size_w % 16
    top, left = (h - size_h) // 2, (w - size_w) // 2
    return x[..., top : top + size_h, left : left + size_w]


@torch.inference_mode()
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--model", default=None, help="registered name or .safetensors (default: the embedded model)")
    p.add_argument("--levels", type=int, nargs="+", help="default: every level")
    p.add_argument("--realism", type=float, nargs="+", help="decoder settings to measure (default: the model's)")
    p.add_argument("--realism-file", help="decoder endpoints to use instead of the model's own (build_realism.py)")
    p.add_argument("--crop", type=int, help="center crop (pixels) of each image")
    p.add_argument("--limit", type=int)
    args = p.parse_args(argv)

    codec = Codec.from_pretrained(args.model, device="cpu", restorer=False, realism=args.realism_file or True)
    lpips = lpips_squeeze()
    levels = args.levels or codec.levels
    settings = args.realism or [None]
    tags = {r: "" if r is None else f", R={r:g}" for r in settings}
    conditions = [f"{name}{tags[r]}" for r in settings for name in ["unquantized", *[f"level {lv}" for lv in levels]]]
    rows = []
    for path in tqdm(list_images(args.data)[: args.limit], desc="images", unit="img"):
        x = load(path, args.crop)
        latent = codec.model.encode_latent(x)
        grids = codec.runner.encode_levels(x, levels)
        decodes = {}
        for r in settings:
            decodes[f"unquantized{tags[r]}"] = codec.runner.decoder_model(r).decode_latent(latent).float()
            for level in levels:
                decodes[f"level {level}{tags[r]}"] = codec.decode_indices(grids[level], level, realism=r)
        for name, y in decodes.items():
            excess = grid_excess(y, x)
            rows.append({"image": path.name, "condition": name, "psnr": float(psnr(y, x)[0]),
                         "lpips_squeeze": float(lpips(y, x).mean()),
                         **{f"grid_excess_p{p}": excess[p] for p in PERIODS}})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "per_image.json").write_text(json.dumps(rows, indent=1))
    header = "| condition | PSNR | LPIPS-Sq | " + " | ".join(f"grid excess p={p} (dB)" for p in PERIODS) + " |"
    lines = [header, "|---|" + "---:|" * (2 + len(PERIODS))]
    for name in conditions:
        rs = [r for r in rows if r["condition"] == name]
        cells = [np.mean([r["psnr"] for r in rs]), np.mean([r["lpips_squeeze"] for r in rs])]
        cells += [np.mean([r[f"grid_excess_p{p}"] for r in rs]) for p in PERIODS]
        lines.append(f"| {name} | {cells[0]:.2f} | {cells[1]:.4f} | " + " | ".join(f"{c:+.1f}" for c in cells[2:]) + " |")
    table = "\n".join(lines)
    (out / "summary.md").write_text(f"{len(rows) // len(conditions)} images\n\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
