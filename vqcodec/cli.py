"""``vqcodec`` command line: a thin layer over :mod:`vqcodec.api` and :class:`vqcodec.Codec`."""

from __future__ import annotations

import argparse
import contextlib
import glob
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__, corpus, registry
from .codec import Codec, container, granularity, tone
from .codec.codec import DEFAULT_GRANULARITY, DEFAULT_TONE, GRANULARITIES, TONES
from .codec.image_io import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, as_rgb_array, encode_image_file, load_image
from .codec.restore import DEFAULT_STEPS, METHODS
from .entropy import CHOICES as ENTROPY_CHOICES
from .entropy import NAMES as ENTROPY_NAMES
from .errors import BitstreamError, VQCodecError
from .evaluation import channel
from .fileio import atomic_write

EPILOG = """examples:
  vqcodec encode photo.png                  # writes photo.vqc beside it
  vqcodec encode photos/ -o out/ --level 256
  vqcodec decode out/*.vqc -o decoded/
  vqcodec encode corpus/ -o out/ --ray       # corpus mode on a local Ray instance (or --ray ray://HEAD:10001)
  vqcodec info photo.vqc
  vqcodec encode photo.png --packets 16     # loss-resilient: 16 independently decodable packets
  vqcodec decode photo.vqc --simulate-loss 0.2 --seed 1   # drop 20 % of the packets, restore
  cat photo.png | vqcodec encode - -o - > photo.vqc
"""


class CliError(Exception):
    """A usage problem found after parsing (bad output path, nothing to do…)."""


def _expand(inputs: Sequence[str], suffixes: set[str]) -> list[str]:
    """Files, directories (their matching files, sorted) and globs → a list of inputs."""
    out: list[str] = []
    for item in inputs:
        if item == "-":
            out.append(item)
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                raise CliError(f"{item}: no {'/'.join(sorted(suffixes))} files in this directory")
            out += found
        elif any(ch in item for ch in "*?[") and not path.exists():
            matches = sorted(glob.glob(item))
            if not matches:
                raise CliError(f"{item}: no files match")
            out += matches
        else:
            out.append(item)
    return out


def _outputs(inputs: list[str], out: str | None, suffix: str) -> list[str]:
    """Output path for each input: beside it, inside ``out`` (a directory), ``out`` itself, or ``-``."""
    many = len(inputs) > 1
    if out == "-":
        if many:
            raise CliError("-o - (stdout) takes a single input")
        return ["-"]
    if out is not None and (many or Path(out).is_dir() or out.endswith(("/", "\\"))):
        Path(out).mkdir(parents=True, exist_ok=True)
        names = [("stdin" if i == "-" else Path(i).stem) + suffix for i in inputs]
        if len(set(names)) != len(names):
            raise CliError("two inputs would write the same output name; encode them in separate runs")
        return [str(Path(out) / n) for n in names]
    if out is not None:
        return [out]
    if "-" in inputs:
        return ["-"]
    return [str(Path(i).with_suffix(suffix)) for i in inputs]


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise VQCodecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise VQCodecError(f"{path}: is a directory") from None


def _write(path: str, data: bytes, source: str, force: bool) -> None:
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    if source != "-" and Path(path).resolve() == Path(source).resolve():
        raise VQCodecError(f"{path}: refusing to overwrite the input file")
    try:
        atomic_write(path, data, force=force)
    except FileExistsError as exc:
        raise VQCodecError(f"{exc} (use --force to overwrite)") from None


def _run_batch(items: list[tuple[str, str]], work: Callable[[str, str], str], quiet: bool) -> int:
    """Run ``work(input, output)`` over all items; a failure is reported and the batch goes on."""
    from tqdm import tqdm

    failures: list[str] = []
    show_bar = len(items) > 1 and not quiet
    bar = tqdm(items, disable=not show_bar, unit="img", file=sys.stderr, dynamic_ncols=True)
    for src, dst in bar:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                message = work(src, dst)
            for w in caught:
                _say(f"warning: {w.message}", bar)
            if message and not quiet:
                _say(message, bar)
        except VQCodecError as exc:
            failures.append(src)
            _say(f"error: {exc}", bar)
    if failures:
        _say(f"error: {len(failures)} of {len(items)} inputs failed: {', '.join(failures)}", None)
        return 1
    return 0


def _say(message: str, bar) -> None:
    text = f"vqcodec: {message}"
    if bar is not None and not bar.disable:
        bar.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr)


class _Ahead:
    """Runs a batch API on the next ``size`` inputs at once and hands its results out one input at a
    time, so the per-file loop and its per-file errors stay as they are. An input the batch did not
    take (it failed to load, or the batch raised) is left to the per-file path."""

    def __init__(self, inputs: list[str], size: int, run: Callable[[list[str]], dict[str, object]]) -> None:
        self.inputs, self.size, self.run = inputs, size, run
        self.done: dict[str, object] = {}
        self.tried: set[str] = set()

    def get(self, src: str) -> object | None:
        """The batch's result for ``src``, running the batch that starts at ``src`` when it is due."""
        if self.size > 1 and src not in self.tried:
            at = self.inputs.index(src)
            batch = self.inputs[at : at + self.size]
            self.tried.update(batch)
            try:
                self.done = self.run(batch)
            except VQCodecError:
                self.done = {}
        return self.done.pop(src, None)


def _codec_loader(args: argparse.Namespace) -> Callable[[str | None], Codec]:
    cache: dict[str, Codec] = {}

    def get(model: str | None) -> Codec:
        key = args.model or (registry.model_named_by_file(model) if model else registry.DEFAULT_MODEL)
        if key not in cache:
            cache[key] = Codec.from_pretrained(key, weights=args.weights, device=args.device, max_pixels=args.max_pixels,
                                               progress=not args.quiet)
        return cache[key]

    return get


def _corpus(args: argparse.Namespace, run: Callable[..., corpus.CorpusReport], **options) -> int:
    """``--ray``: one input directory and ``-o OUTDIR``, handed to :mod:`vqcodec.corpus`."""
    if len(args.inputs) != 1 or not Path(args.inputs[0]).is_dir():
        raise CliError("--ray takes one input directory")
    if args.output in (None, "-"):
        raise CliError("--ray needs -o OUTDIR")
    if args.batch_size != 1:
        raise CliError("--batch-size does not go with --ray (each Ray worker codes one image at a time)")
    settings = corpus.CorpusRun(address=args.ray, model=args.model, weights=args.weights, device=args.device,
                                max_pixels=args.max_pixels, force=args.force, progress=not args.quiet)
    report = run(args.inputs[0], args.output, settings, **options)
    shown = 10
    for source, error in report.failed[:shown]:
        _say(f"error: {error if error.startswith(source) else f'{source}: {error}'}", None)
    more = f" ({len(report.failed) - shown} more in the manifest)" if len(report.failed) > shown else ""
    if report.failed or not args.quiet:
        _say(f"{report.ok} ok, {report.skipped} already done, {len(report.failed)} errors{more}; manifest {report.manifest}", None)
    return 1 if report.failed else 0


def _operating_point(args: argparse.Namespace) -> dict:
    """The encode options that pick the operating point and packetization."""
    return {"level": args.level, "scale": args.scale, "bpp": args.bpp, "max_bytes": args.max_bytes,
            "packets": args.packets, "packet_bytes": args.packet_bytes, "entropy": args.entropy,
            "granularity": args.granularity, "tone": args.tone}


def _shares(header: container.Header) -> str:
    """The share of the coded area at each token granularity, as ``f16 40% f32 35% f64 25%``."""
    try:
        shares = granularity.shares(granularity.decode_map(header.granularity_map, header.grid_height, header.grid_width),
                                    header.grid_height, header.grid_width)
    except BitstreamError as exc:
        return f"unreadable map ({exc})"
    return " ".join(f"{granularity.NAMES[g]} {share:.0%}" for g, share in shares.items())


def _tone(header: container.Header) -> str:
    """The tone layer's size and grid, as ``212 bytes, 64-pixel cells (3x24x16), steps 4/8``."""
    try:
        layer = tone.decode_layer(header.tone, header.width, header.height)
    except BitstreamError as exc:
        return f"unreadable ({exc})"
    grid = "x".join(map(str, layer.values.shape))
    return f"{len(header.tone)} bytes, {layer.block}-pixel cells ({grid}), steps {layer.steps[0]}/{layer.steps[1]}"


def cmd_encode(args: argparse.Namespace) -> int:
    if args.ray:
        return _corpus(args, corpus.encode_corpus, **_operating_point(args))
    inputs = _expand(args.inputs, IMAGE_SUFFIXES)
    outputs = _outputs(inputs, args.output, ".vqc")
    codec_for = _codec_loader(args)

    def encode_many(sources: list[str]) -> dict[str, object]:
        images = {}
        for src in sources:
            with contextlib.suppress(VQCodecError):
                images[src] = as_rgb_array(load_image(src, args.max_pixels))
        files = codec_for(None).encode_batch(list(images.values()), batch_size=args.batch_size, **_operating_point(args))
        return dict(zip(images, files))

    ahead = _Ahead(inputs, 1 if "-" in inputs else args.batch_size, encode_many)

    def work(src: str, dst: str) -> str:
        encoded = ahead.get(src)
        if encoded is None:
            image = as_rgb_array(load_image(_read(src) if src == "-" else src, args.max_pixels))  # the PIL copy goes now
            encoded = codec_for(None).encode(image, **_operating_point(args))
        _write(dst, encoded.data, src, args.force)
        h = encoded.header
        scale = f" at {h.coded_size[0]}x{h.coded_size[1]}" if h.resized else ""
        grain = f", {_shares(h)}" if h.granularity_map else ""
        tone_layer = f", tone layer {len(h.tone)} bytes" if h.tone else ""
        return f"{src} -> {dst}: {len(encoded.data)} bytes, {encoded.bpp:.4f} bpp, level {h.level}{scale}{grain}{tone_layer}"

    return _run_batch(list(zip(inputs, outputs)), work, args.quiet or "-" in outputs)


def cmd_decode(args: argparse.Namespace) -> int:
    if args.ray:
        if args.simulate_loss:
            raise CliError("--simulate-loss does not go with --ray")
        return _corpus(args, corpus.decode_corpus, restore=args.restore, restore_steps=args.restore_steps,
                       realism=args.realism)
    inputs = _expand(args.inputs, {".vqc"})
    outputs = _outputs(inputs, args.output, ".png")
    codec_for = _codec_loader(args)
    options = {"restore": args.restore, "restore_steps": args.restore_steps, "realism": args.realism}

    def decode_many(sources: list[str]) -> dict[str, object]:
        streams = {}
        for src in sources:
            with contextlib.suppress(VQCodecError):
                streams[src] = container.read(_read(src), args.max_pixels)
        model = next(iter(streams.values())).header.model_id if streams else None
        streams = {src: stream for src, stream in streams.items() if stream.header.model_id == model}
        decoded = codec_for(model).decode_batch(list(streams.values()), batch_size=args.batch_size, **options)
        return {src: (model, result) for src, result in zip(streams, decoded)}

    ahead = _Ahead(inputs, 1 if "-" in inputs or args.simulate_loss else args.batch_size, decode_many)

    def work(src: str, dst: str) -> str:
        done = ahead.get(src)
        if done is not None:
            model, (image, report) = done
            codec = codec_for(model)
        else:
            stream = container.read(_read(src), args.max_pixels)
            codec = codec_for(stream.header.model_id)
            if args.simulate_loss:
                image, report = channel.decode_with_loss(codec, stream, args.simulate_loss, args.loss_unit, args.seed, **options)
            else:
                image, report = codec.decode_with_report(stream, **options)
        _write(dst, encode_image_file(image, "x.png" if dst == "-" else dst), src, args.force)
        realism = codec.default_realism if args.realism is None else args.realism
        note = "" if realism is None else f", realism {realism:g}"
        if report.packets:
            note += f", {report.packets - len(report.packets_lost)}/{report.packets} packets"
        if report.indices_lost:
            note += f", {report.indices_lost}/{report.indices} indices lost, restored ({report.restored_with})"
        return f"{src} -> {dst}: {image.width}x{image.height}{note}"

    return _run_batch(list(zip(inputs, outputs)), work, args.quiet or "-" in outputs)


def cmd_info(args: argparse.Namespace) -> int:
    inputs = _expand(args.inputs, {".vqc"})

    def work(src: str, _dst: str) -> str:
        data = _read(src)
        stream = container.read(data, args.max_pixels)
        h = stream.header
        pixels = h.width * h.height
        if h.packetized:
            found = len(stream.packets)
            lost = ", ".join(map(str, stream.lost_packets)) or "none"
            payload = (f"  packets      {found} of {h.packets} found (lost: {lost}); "
                       f"{sum(map(len, stream.packets.values()))} payload bytes, {stream.damaged_bytes} damaged bytes skipped")
        else:
            payload = f"  payload      {len(stream.payload)} bytes"
        print(
            f"{src}:\n"
            f"  model        {h.model_id} (weights {h.fingerprint.hex()})\n"
            f"  level        {h.level} codes\n"
            f"  size         {h.width}x{h.height}"
            + (f", coded at {h.coded_size[0]}x{h.coded_size[1]}" if h.resized else "")
            + f" (grid {h.grid_width}x{h.grid_height}, f{h.factor}, padding {h.padding[0]}+{h.padding[1]})\n"
            f"  format       version {h.version}\n"
            f"  entropy      {ENTROPY_NAMES.get(h.entropy_model, 'unknown')} (id {h.entropy_model})"
            + (f", tables {h.context_fingerprint.hex()}" if h.context_fingerprint else "") + "\n"
            f"  granularity  {_shares(h) + f' (map {len(h.granularity_map)} bytes)' if h.granularity_map else 'f16'}\n"
            f"  tone layer   {_tone(h) if h.tone else 'none'}\n"
            f"{payload}\n"
            f"  file         {len(data)} bytes, {len(data) * 8 / pixels:.4f} bpp"
        )
        return ""

    return _run_batch([(i, "") for i in inputs], work, True)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqcodec",
        description="Extreme low-bitrate image compression (0.01-0.1 bpp) with fine-tuned VQGAN codebooks.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vqcodec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{encode,decode,info}")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    common.add_argument(
        "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
        help=f"refuse images (or headers) larger than this many pixels (default {DEFAULT_MAX_PIXELS})",
    )

    model_opts = argparse.ArgumentParser(add_help=False)
    model_opts.add_argument("--model", help="registered model name or a .safetensors/.ckpt path (default: vqcodec-f16; "
                            "decode: the model named in the file)")
    model_opts.add_argument("--weights", help="read the registered model's weights from this file")
    model_opts.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    model_opts.add_argument("-f", "--force", action="store_true", help="overwrite existing output files")
    model_opts.add_argument("--batch-size", type=_positive, default=1, metavar="N",
                            help="run the networks on up to N inputs at a time (inputs of one size share a batch): "
                                 "for many files on a GPU; the files are the same at any N (default 1)")
    model_opts.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                            help="corpus mode: convert the input directory on Ray into -o OUTDIR, with OUTDIR/manifest.parquet; "
                                 "ADDRESS: local (default: a Ray instance on this machine), auto, or ray://HEAD:10001")

    enc = sub.add_parser("encode", parents=[common, model_opts], help="images -> .vqc files",
                         description="Compress images to .vqc files.")
    enc.add_argument("inputs", nargs="+", help="image files, directories or globs; - for stdin")
    enc.add_argument("-o", "--output", help="output file, directory, or - for stdout (default: beside each input)")
    enc.add_argument("-l", "--level", type=int, help="codebook size; smaller = fewer bits (see 'vqcodec info')")
    enc.add_argument("--scale", type=float, metavar="S",
                     help="code the image at this multiple of its size (0 < S <= 2); decoding resizes it back")
    enc.add_argument("--bpp", type=float, metavar="X",
                     help="rate control: the best level and scale whose whole file stays within X bits per pixel")
    enc.add_argument("--max-bytes", type=int, metavar="N", help="rate control: the best file of at most N bytes")
    enc.add_argument("--entropy", default="auto", choices=ENTROPY_CHOICES,
                     help="context: code the indices with the model's context model (about a quarter fewer bytes); "
                          "static: with each level's static prior; auto (default): context for a plain file when the "
                          "model has one, static for a packetized file (where context saves under 1 %%)")
    enc.add_argument("--granularity", default=DEFAULT_GRANULARITY, choices=GRANULARITIES,
                     help="adaptive: one token per 16, 32 or 64 coded pixels, chosen per region by rate-distortion "
                          "(encoding decodes the image three times to choose); 16: one token per 16 pixels everywhere, "
                          "several times faster to encode, with --bpp on large photos above all "
                          f"(default: {DEFAULT_GRANULARITY})")
    enc.add_argument("--tone", default=DEFAULT_TONE, choices=TONES,
                     help="a tone layer: a coarse colour correction of the decode (tens to thousands of bytes) that "
                          "removes colour blotches on smooth areas. auto: rate control adds it when it beats spending "
                          "its bytes on tokens (a fixed --level adds none); on: always; off: never "
                          f"(default: {DEFAULT_TONE})")
    packets = enc.add_mutually_exclusive_group()
    packets.add_argument("--packets", type=int, metavar="N",
                         help="split the indices into N independently decodable, interleaved packets (loss-resilient)")
    packets.add_argument("--packet-bytes", type=int, metavar="B",
                         help="packetize with as few packets as keep each payload within B bytes (e.g. an MTU)")
    enc.set_defaults(func=cmd_encode)

    dec = sub.add_parser("decode", parents=[common, model_opts], help=".vqc files -> images",
                         description="Decompress .vqc files to PNG (or the format the output name asks for).")
    dec.add_argument("inputs", nargs="+", help=".vqc files, directories or globs; - for stdin")
    dec.add_argument("-o", "--output", help="output file, directory, or - for stdout (default: beside each input, .png)")
    dec.add_argument("--restore", default="auto", choices=["auto", *METHODS],
                     help="how lost indices are filled: the transformer restorer (auto, when the model has one), "
                          "the nearest surviving neighbour's code, or one fixed code (default: auto)")
    dec.add_argument("--restore-steps", type=int, default=DEFAULT_STEPS,
                     help=f"transformer restoration iterations (default {DEFAULT_STEPS}: one shot, which measured best)")
    dec.add_argument("--realism", type=float, metavar="R",
                     help="fidelity-realism setting of the decoder, 0...1: 0 is the most faithful picture (highest "
                          "PSNR, no invented texture), 1 the most detailed; the same file decodes at any R (default: the model's)")
    dec.add_argument("--simulate-loss", type=float, default=0.0, metavar="P",
                     help="experiment: drop this fraction of packets (or indices, see --loss-unit) before decoding")
    dec.add_argument("--loss-unit", default="packet", choices=channel.LOSS_UNITS,
                     help="what --simulate-loss drops (default: packet; plain files need index)")
    dec.add_argument("--seed", type=int, default=0, help="random seed of --simulate-loss (default 0)")
    dec.set_defaults(func=cmd_decode)

    info = sub.add_parser("info", parents=[common], help="print the header of .vqc files",
                          description="Print model, level, size, bitrate and payload size of .vqc files.")
    info.add_argument("inputs", nargs="+", help=".vqc files, directories or globs; - for stdin")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="vqcodec: %(message)s")
    try:
        return args.func(args)
    except CliError as exc:
        parser.error(str(exc))
    except VQCodecError as exc:
        print(f"vqcodec: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vqcodec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
