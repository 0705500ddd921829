#!/usr/bin/env python
"""Speed, memory and coding-overhead benchmark, side by side with a classical codec.

Encodes and decodes one image (default: Kodak kodim23, 768×512) with vqcodec and with Pillow's
AVIF at a similar bitrate (downscaled as far as needed to get there), each in a fresh process so
peak memory (max RSS, and CUDA peak when on GPU) belongs to that codec alone, and prints the
ratios. Also measures the range coder's overhead over the cross-entropy of the indices, and the
time to restore ``--loss`` (20 %) lost indices with the transformer and the nearest-neighbour baseline.

    python scripts/benchmark.py [--image PATH] [--level S] [--granularity G] [--device cpu|cuda] [--repeat 5]

``--realism R ...`` also times decoding at each fidelity–realism setting. ``--baseline DIR`` runs
the vqcodec measurement of another checkout (its own ``scripts/benchmark.py``, for example after
``git worktree add /tmp/old COMMIT``) in its own process and prints this checkout's times as
ratios of it:

    python scripts/benchmark.py --realism 0 0.5 1 --baseline /tmp/old

``--batch-sizes 1 2 4 ... 64`` instead times ``Codec.encode_batch`` / ``decode_batch`` on copies of
the image (images per second at each batch size, lossless round trip checked; on a GPU, name
``--device cuda``)::

    python scripts/benchmark.py --batch-sizes 1 4 16 64 --granularity 16 --device cuda

``--corpus DIR`` instead times whole-folder runs: ``vqcodec encode DIR -o OUT`` (the plain
multi-file CLI) against the same command with ``--ray`` on a local Ray instance, then the same for
``decode``, each pinned to the same ``--threads`` cores, and prints images per second and the ratio:

    python scripts/benchmark.py --corpus ../shared/data/kodak [--device cpu|cuda] [--threads 2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_IMAGE = Path(__file__).resolve().parents[2] / "shared/data/kodak/kodim23.png"


def _timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def run_vqcodec(args) -> dict:
    import torch

    from vqcodec import Codec
    from vqcodec.codec.container import unpack
    from vqcodec.codec.image_io import image_to_tensor, load_image
    from vqcodec.entropy import NAMES
    from vqcodec.evaluation.channel import index_loss_mask

    torch.set_num_threads(args.threads)
    codec = Codec.from_pretrained(args.model, device=args.device)
    image = load_image(args.image)
    options = {"level": args.level, "entropy": args.entropy, "granularity": args.granularity}
    codec.decode(codec.encode(image, **options).data)  # warm-up (level caches, allocator)
    if codec.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    enc_s, data = _timed(lambda: codec.encode(image, **options).data, args.repeat)
    dec_s, _ = _timed(lambda: codec.decode(data), args.repeat)
    realism = {f"decode_s_r{r:g}": _timed(lambda r=r: codec.decode(data, realism=r), args.repeat)[0]
               for r in args.realism or []}
    header, _ = unpack(data)
    _, payload = unpack(codec.encode(image, level=header.level, entropy="static").data)
    x = image_to_tensor(image)
    indices = codec.encode_indices(x, header.level).numpy()
    prior = codec.entropy.for_level(header.level, "static").prior
    ideal_bits = prior.cross_entropy_bits(indices)
    out = {
        "codec": f"vqcodec {codec.model_id} level {header.level}, {NAMES[header.entropy_model]}, {args.granularity}",
        "bytes": len(data),
        "bpp": len(data) * 8 / (image.width * image.height),
        "encode_s": enc_s,
        "decode_s": dec_s,
        **realism,
        "payload_bytes": len(payload),  # static prior: the coder's overhead over its cross-entropy
        "ideal_payload_bytes": ideal_bits / 8,
        "overhead_pct": 100 * (len(payload) * 8 / ideal_bits - 1) if ideal_bits else 0.0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    grid = torch.from_numpy(indices[0])
    known = index_loss_mask(tuple(grid.shape), args.loss, seed=0)
    for method in ("transformer", "neighbour"):
        if method == "transformer" and codec.restorer is None:
            continue
        out[f"restore_{method}_s"], _ = _timed(
            lambda m=method: codec.restore_indices(grid, known, header.level, m), args.repeat)
    if codec.device.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_avif(args) -> dict:
    from PIL import Image

    image = Image.open(args.image).convert("RGB")
    w, h = image.size
    best = None
    for scale in (1.0, 0.75, 0.5, 0.35, 0.25, 0.18, 0.125):
        small = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS) if scale < 1 else image
        for quality in range(60, -1, -5):
            buf = io.BytesIO()
            small.save(buf, format="AVIF", quality=quality)
            if buf.tell() * 8 / (w * h) <= args.target_bpp:
                best = (scale, quality, small)
                break
        if best:
            break
    if best is None:
        raise SystemExit("AVIF cannot reach the target bitrate")
    scale, quality, small = best

    def encode() -> bytes:
        buf = io.BytesIO()
        src = image.resize(small.size, Image.LANCZOS) if scale < 1 else image
        src.save(buf, format="AVIF", quality=quality)
        return buf.getvalue()

    def decode(data: bytes):
        im = Image.open(io.BytesIO(data))
        im.load()
        return im.resize((w, h), Image.LANCZOS) if scale < 1 else im

    enc_s, data = _timed(encode, args.repeat)
    dec_s, _ = _timed(lambda: decode(data), args.repeat)
    return {
        "codec": f"AVIF q{quality} at scale {scale}",
        "bytes": len(data),
        "bpp": len(data) * 8 / (w * h),
        "encode_s": enc_s,
        "decode_s": dec_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_batches(args) -> int:
    """Images per second through ``Codec.encode_batch`` / ``decode_batch`` at each batch size, the
    same image repeated, with every file's indices checked against a single encode (lossless)."""
    import numpy as np
    import torch

    from vqcodec import Codec
    from vqcodec.codec import container, payload
    from vqcodec.codec.image_io import load_image

    torch.set_num_threads(args.threads)
    codec = Codec.from_pretrained(args.model, device=args.device)
    image = load_image(args.image)
    options = {"level": args.level, "entropy": args.entropy, "granularity": args.granularity}

    def indices(file) -> np.ndarray:
        return payload.read(container.read(file.data), codec.check_compatible(file.header)).indices

    expected = indices(codec.encode(image, **options))
    sync = torch.cuda.synchronize if codec.device.type == "cuda" else (lambda: None)
    print(f"image {args.image} ({image.width}x{image.height}), device {args.device}, {args.threads} threads, "
          f"granularity {args.granularity}, best of {args.repeat}")
    print(f"{'batch':>6}{'encode (img/s)':>16}{'decode (img/s)':>16}{'enc+dec (img/s)':>17}  lossless")
    for size in args.batch_sizes:
        images = [image] * size
        codec.decode_batch([f.data for f in codec.encode_batch(images, batch_size=size, **options)], batch_size=size)
        enc, dec = float("inf"), float("inf")
        for _ in range(args.repeat):
            sync()
            t = time.perf_counter()
            files = codec.encode_batch(images, batch_size=size, **options)
            sync()
            enc = min(enc, time.perf_counter() - t)
            t = time.perf_counter()
            codec.decode_batch([f.data for f in files], batch_size=size)
            sync()
            dec = min(dec, time.perf_counter() - t)
        lossless = all(np.array_equal(indices(f), expected) for f in files)
        print(f"{size:>6}{size / enc:>16.2f}{size / dec:>16.2f}{size / (enc + dec):>17.2f}  {'yes' if lossless else 'NO'}")
    return 0


RAY_CLI = "import ray, sys; ray.init(num_cpus=int(sys.argv[1]), include_dashboard=False); " \
          "from vqcodec.cli import main; sys.exit(main(sys.argv[2:]))"


def run_corpus(args) -> int:
    """Images per second of the plain multi-file CLI and of ``--ray`` on the same folder and cores.
    Each is one timed run of the whole command, start-up and model loading (and Ray's) included."""
    import tempfile

    from vqcodec.codec.image_io import IMAGE_SUFFIXES

    if not Path(args.corpus).is_dir():
        raise SystemExit(f"not a directory: {args.corpus}")
    count = sum(1 for p in Path(args.corpus).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    cores = range(min(args.threads, os.cpu_count() or 1))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    model = ["--model", args.model] if args.model else []

    def timed(ray: bool, *cli: str) -> float:
        cmd = [sys.executable, "-c", RAY_CLI, str(args.threads), *cli, "--ray"] if ray else [sys.executable, "-m", "vqcodec.cli", *cli]
        t = time.perf_counter()
        res = subprocess.run([*cmd, "-q", "--device", args.device, *model], capture_output=True, text=True, env=env,
                             preexec_fn=lambda: os.sched_setaffinity(0, cores))
        if res.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr}")
        return time.perf_counter() - t

    subprocess.run([sys.executable, "-c", "import torch, vqcodec"], check=True)  # warm the file cache
    print(f"corpus {args.corpus}: {count} images, device {args.device}, {args.threads} threads on cores {list(cores)}, "
          "wall-clock of the whole command")
    print(f"{'':8}{'plain CLI (img/s)':>20}{'--ray local (img/s)':>22}{'ratio':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        level = ["--level", str(args.level)] if args.level else []
        for command, src, opts in (("encode", args.corpus, level), ("decode", f"{tmp}/encode-plain", [])):
            plain = timed(False, command, src, "-o", f"{tmp}/{command}-plain", *opts)
            ray = timed(True, command, src, "-o", f"{tmp}/{command}-ray", *opts)
            print(f"{command:8}{count / plain:>20.3f}{count / ray:>22.3f}{plain / ray:>8.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", default=str(DEFAULT_IMAGE))
    p.add_argument("--model", default=None, help="registered name or path (default: vqcodec-f16)")
    p.add_argument("--level", type=int, default=None)
    p.add_argument("--entropy", default="auto", choices=["auto", "static", "context"], help="entropy model to time")
    p.add_argument("--granularity", default="adaptive", choices=["adaptive", "16"],
                   help="token granularity to encode with (adaptive: the default, three extra decodes per encode)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--loss", type=float, default=0.2, help="fraction of indices lost for the restoration timing")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--realism", type=float, nargs="+", help="also time decoding at these fidelity-realism settings")
    p.add_argument("--baseline", metavar="DIR", help="a vqcodec checkout to time side by side (its encode and decode)")
    p.add_argument("--corpus", metavar="DIR", help="time the plain multi-file CLI against --ray on this folder")
    p.add_argument("--batch-sizes", type=int, nargs="+", metavar="B",
                   help="instead, images per second through Codec.encode_batch/decode_batch at these batch sizes")
    p.add_argument("--worker", choices=["vqcodec", "avif"], help=argparse.SUPPRESS)
    p.add_argument("--target-bpp", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.corpus:
        return run_corpus(args)
    if args.batch_sizes:
        return run_batches(args)
    if not Path(args.image).is_file():
        raise SystemExit(f"image not found: {args.image} (pass --image)")

    if args.worker:
        result = run_vqcodec(args) if args.worker == "vqcodec" else run_avif(args)
        print(json.dumps(result))
        return 0

    def worker(kind: str, extra: list[str], source: str | None = None) -> dict:
        script = Path(source) / "scripts" / "benchmark.py" if source else __file__  # it imports its own checkout
        cmd = [sys.executable, str(script), "--worker", kind, "--image", args.image, "--device", args.device,
               "--threads", str(args.threads), "--repeat", str(args.repeat), "--loss", str(args.loss), *extra]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode != 0:
            raise SystemExit(f"{kind} worker failed:\n{res.stderr}")
        return json.loads(res.stdout.strip().splitlines()[-1])

    extra = (["--model", args.model] if args.model else []) + (["--level", str(args.level)] if args.level else [])
    extra += ["--granularity", args.granularity]
    vq = worker("vqcodec", extra + ["--entropy", args.entropy] + (["--realism", *map(str, args.realism)] if args.realism else []))
    avif = worker("avif", ["--target-bpp", str(vq["bpp"])])
    rows = [("bpp", "bpp", "{:.4f}"), ("encode_s", "encode (s)", "{:.3f}"), ("decode_s", "decode (s)", "{:.3f}"),
            ("peak_rss_mb", "peak RSS (MB)", "{:.0f}")]
    print(f"image {args.image}, device {args.device}, {args.threads} threads, median of {args.repeat}")
    print(f"{'':16}{vq['codec']:>34}{avif['codec']:>28}{'ratio':>10}")
    for key, label, fmt in rows:
        ratio = vq[key] / avif[key] if avif[key] else float("nan")
        print(f"{label:16}{fmt.format(vq[key]):>34}{fmt.format(avif[key]):>28}{ratio:>10.2f}")
    baseline = worker("vqcodec", extra, args.baseline) if args.baseline else None
    timings = [(k, k.replace("decode_s_r", "decode at R=").replace("_s", "")) for k in vq if k.startswith("decode_s_r")]
    if timings or baseline:
        print(f"{'':16}{'this checkout (s)':>34}{'baseline (s)':>28}{'ratio':>10}")
        for key, label in [("encode_s", "encode"), ("decode_s", "decode"), *timings]:
            base = baseline["decode_s" if key.startswith("decode") else key] if baseline else float("nan")
            print(f"{label:16}{vq[key]:>34.3f}{base:>28.3f}{vq[key] / base:>10.2f}")
    if "cuda_peak_mb" in vq:
        print(f"{'CUDA peak (MB)':16}{vq['cuda_peak_mb']:>34.0f}")
    print(f"coding overhead: payload {vq['payload_bytes']} B vs cross-entropy {vq['ideal_payload_bytes']:.1f} B "
          f"= {vq['overhead_pct']:+.2f} %")
    lost = f"{100 * args.loss:.0f} % of the indices lost"
    if "restore_transformer_s" in vq:
        total = vq["restore_transformer_s"] + vq["decode_s"]
        print(f"restoration, {lost}: transformer {vq['restore_transformer_s']:.3f} s, "
              f"nearest neighbour {vq['restore_neighbour_s']:.3f} s; restore + decode {total:.3f} s "
              f"= {total / vq['decode_s']:.2f}x the loss-free decode")
    else:
        print(f"restoration, {lost}: nearest neighbour {vq['restore_neighbour_s']:.3f} s (the model has no restorer)")
    if args.json:
        Path(args.json).write_text(json.dumps({"vqcodec": vq, "avif": avif}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
