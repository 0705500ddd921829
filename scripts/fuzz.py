#!/usr/bin/env python
"""Fuzz the ``.vqc`` container parser, the whole decoder and the entropy decoder.

The contract under test: whatever bytes arrive, decoding ends in a result (a header, an image,
symbols) or a :class:`vqcodec.VQCodecError`, within a bounded time and memory. Any other
exception, a failed property check, an input slower than ``--timeout`` or a peak RSS above
``--rss-limit-mb`` is a failure; failing inputs are saved under ``--artifacts``.

Targets (``--target``; ``all`` runs every input through each of them):

- ``container``: ``container.read`` and ``container.unpack``; a plain file that parses must
  re-pack to the same bytes.
- ``codec``: ``Codec.decode`` with a tiny model built in-process (the recipe of
  ``tests/conftest.py``, fixed seed), on the input as is and with its CRC-32s recomputed, so that
  mutations get past the checksums to the header checks, packet parsing, the entropy decoder,
  lost-index restoration and the network.
- ``entropy``: ``decode_symbols``; bytes 0-1 give the symbol count (u16), byte 2 picks a prior,
  the rest is the payload. Decoded symbols must have the right count and range.

Engines: ``random`` (default; Python's ``random`` mutating the corpus: truncations, bit flips,
random bytes, header field edits with and without a fixed CRC, splices) needs nothing beyond
vqcodec and is what CI runs; ``atheris`` is coverage-guided (``pip install atheris``) and passes
``-timeout`` and ``-rss_limit_mb`` to libFuzzer::

    python scripts/fuzz.py --runs 100000                           # random engine, all targets
    python scripts/fuzz.py --engine atheris --target codec --runs 100000
    python scripts/fuzz.py --make-corpus tests/fuzz_corpus         # rewrite the seed corpus

Corpus file names say what the decoder must do with them: ``<outcome>--<what>.<ext>``, where
``outcome`` is ``ok`` or the exception class of the primary target (``.vqc``: codec, ``.sym``:
entropy) and ``any`` means only "no crash"; ``tests/test_fuzz_corpus.py`` replays them.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import resource
import signal
import struct
import sys
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # conftest.py holds the tiny-model recipe the tests use

SEED_CORPUS = ROOT / "tests" / "fuzz_corpus"
MAX_PIXELS = 1 << 14  # the fuzz codec's pixel limit: keeps every decode to a few milliseconds
MODEL_ID = "tiny"
MAGIC = b"\x89VQC"
# header fields after the model id: (offset from 7+N, struct format)
FIELDS = {
    "level": (8, "<I"), "width": (12, "<I"), "height": (16, "<I"), "grid_width": (20, "<H"),
    "grid_height": (22, "<H"), "factor": (24, "<B"), "entropy_model": (25, "<B"), "payload_length": (26, "<I"),
}
PAYLOAD_AT = 30  # offset of the payload from 7+N
FLAG_PACKETIZED = 0x01  # packetized files: a u16 packet count replaces the payload length, then a header CRC
PACKETS_AT = 26
FIELDS_PACKETIZED = {**{k: v for k, v in FIELDS.items() if k != "payload_length"}, "packets": (PACKETS_AT, "<H")}


class Hang(Exception):
    """Raised by the per-input alarm of the random engine."""


@dataclass
class Targets:
    """The functions under test, bound to one tiny codec; each returns a short outcome name."""

    codec: object
    container_module: object
    decode_symbols: Callable
    priors: list
    error: type

    def container(self, data: bytes) -> str:
        """``read`` (plain and packetized files), then ``unpack`` (plain files only)."""
        stream = self.container_module.read(data, MAX_PIXELS)
        if stream.header.packetized:
            assert set(stream.packets) <= set(range(stream.header.packets)), "packet number out of range"
            return "ok"
        header, payload = self.container_module.unpack(data, MAX_PIXELS)
        assert self.container_module.pack(header, payload) == data, "a parsed header does not re-pack to the same bytes"
        return "ok"

    def decode(self, data: bytes) -> str:
        image = self.codec.decode(data)
        header = self.container_module.read(data, MAX_PIXELS).header
        assert image.size == (header.width, header.height) and image.mode == "RGB", "decoded image has the wrong size"
        return "ok"

    def codec_target(self, data: bytes) -> str:
        fixed = fix_crc(data)
        if fixed != data:
            _, crash = classify(self.decode, fixed, self.error)
            if crash is not None:
                raise crash
        return self.decode(data)

    def entropy(self, data: bytes) -> str:
        count = int.from_bytes(data[:2], "little")
        prior = self.priors[data[2] % len(self.priors)] if len(data) > 2 else self.priors[0]
        symbols = self.decode_symbols(data[3:], count, prior)
        assert symbols.shape == (count,), "wrong number of symbols"
        assert count == 0 or (0 <= int(symbols.min()) and int(symbols.max()) < prior.size), "symbol out of range"
        return "ok"

    def by_name(self) -> dict[str, Callable[[bytes], str]]:
        return {"container": self.container, "codec": self.codec_target, "entropy": self.entropy}


def classify(fn: Callable[[bytes], str], data: bytes, error: type) -> tuple[str, BaseException | None]:
    """Run ``fn``: ("ok", None), (VQCodecError class name, None), or ("CRASH", the exception)."""
    try:
        return fn(data), None
    except error as exc:
        return type(exc).__name__, None
    except (KeyboardInterrupt, Hang, SystemExit):
        raise
    except BaseException as exc:  # noqa: B036 - pyo3 panics derive from BaseException; they are crashes too
        return "CRASH", exc


def fix_crc(data: bytes) -> bytes:
    """``data`` with valid CRC-32s where it starts like a .vqc: the file's last 4 bytes for a plain
    file; the header's and those of the packets that fit (walked by their lengths) for a packetized one."""
    if len(data) < 11 or data[:4] != MAGIC:
        return data
    if not data[5] & FLAG_PACKETIZED:
        return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))
    head_end = 7 + data[6] + PACKETS_AT + 2
    if len(data) < head_end + 4:
        return data
    head_crc = zlib.crc32(data[:head_end])
    out = bytearray(data)
    out[head_end : head_end + 4] = struct.pack("<I", head_crc)
    pos = head_end + 4
    while pos + 10 <= len(out):
        end = pos + 6 + int.from_bytes(out[pos + 4 : pos + 6], "little") + 4
        if end > len(out):
            break
        out[end - 4 : end] = struct.pack("<I", zlib.crc32(out[pos : end - 4], head_crc))
        pos = end
    return bytes(out)


def tiny_codec(max_pixels: int = MAX_PIXELS):
    """The tests' tiny taef2 model (seed 0, levels 64/16/4, skewed priors) as an in-memory Codec."""
    import torch
    from conftest import skewed_priors, tiny_model

    from vqcodec import Codec
    from vqcodec.weights import LoadedModel, fingerprint, model_tensors

    torch.set_num_threads(1)
    model = tiny_model(name=MODEL_ID)
    priors = skewed_priors(model)
    loaded = LoadedModel(model, priors, fingerprint(model_tensors(model, priors)))
    return Codec(loaded, MODEL_ID, device="cpu", max_pixels=max_pixels)


def build_targets(instrument: bool = False) -> Targets:
    """Import vqcodec (instrumented for coverage under atheris) and bind the targets to a tiny codec."""
    if instrument:
        import atheris

        with atheris.instrument_imports(include=["vqcodec"]):
            import vqcodec.codec.codec  # noqa: F401
            import vqcodec.entropy  # noqa: F401
    import numpy as np

    from vqcodec.codec import container
    from vqcodec.entropy import StaticPrior, decode_symbols
    from vqcodec.errors import VQCodecError

    codec = tiny_codec()
    skewed = np.ones(256)
    skewed[0] = 1e12
    priors = [StaticPrior.uniform(n) for n in (1, 2, 3, 64, 4096, 65536)]
    priors += [codec.prior(level)[1] for level in codec.levels] + [StaticPrior.from_counts(skewed)]
    return Targets(codec, container, decode_symbols, priors, VQCodecError)


# -- the seed corpus -----------------------------------------------------------------------------


def _field(data: bytes, name: str, value: int, crc: bool = True) -> bytes:
    """Set one fixed header field (model id of length ``data[6]``), optionally re-computing the CRC."""
    offset, fmt = _fields(data)[name]
    at = 7 + data[6] + offset
    out = data[:at] + struct.pack(fmt, value) + data[at + struct.calcsize(fmt):]
    return fix_crc(out) if crc else out


def _fields(data: bytes) -> dict[str, tuple[int, str]]:
    return FIELDS_PACKETIZED if data[5] & FLAG_PACKETIZED else FIELDS


def _set(data: bytes, at: int, value: bytes, crc: bool = True) -> bytes:
    out = data[:at] + value + data[at + len(value):]
    return fix_crc(out) if crc else out


def _with_payload(data: bytes, payload: bytes) -> bytes:
    at = 7 + data[6] + PAYLOAD_AT
    out = _field(data[:at] + payload + b"\0" * 4, "payload_length", len(payload), crc=False)
    return fix_crc(out)


def _header(codec, width: int, height: int, level: int = 16, payload: bytes = b"", factor: int = 16, **fields) -> bytes:
    from vqcodec.codec.container import Header, pack

    grid = dict(grid_width=-(-width // factor), grid_height=-(-height // factor))
    grid.update(fields)
    header = Header(MODEL_ID, codec.fingerprint, level, width, height, grid["grid_width"], grid["grid_height"], factor, 1)
    return pack(header, payload)


def seed_corpus(codec) -> dict[str, bytes]:
    """Interesting inputs by name (see the module docstring for the naming rule)."""
    import numpy as np

    from vqcodec.entropy import StaticPrior, encode_symbols

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:57]
    photo = (np.stack([xx * 4, yy * 6, (xx + yy) * 2], axis=-1) % 256).astype(np.uint8)
    base = codec.encode(photo, level=16)
    n = base[6]
    fixed = 7 + n
    c: dict[str, bytes] = {
        "ok--level16-57x40.vqc": base,
        "ok--level4-1x1.vqc": codec.encode(rng.integers(0, 256, (1, 1, 3), dtype=np.uint8), level=4),
        "ok--level64-33x17.vqc": codec.encode(rng.integers(0, 256, (17, 33, 3), dtype=np.uint8), level=64),
        "ok--empty-payload.vqc": _with_payload(base, b""),
        "ok--random-payload.vqc": _with_payload(base, bytes(range(7, 40))),
        "BitstreamError--tall-1-pixel-wide-at-the-limit.vqc": _header(codec, 1, MAX_PIXELS),
        "BitstreamError--wide-at-the-limit.vqc": _header(codec, MAX_PIXELS, 1),
        "BitstreamError--empty.vqc": b"",
        "BitstreamError--magic-only.vqc": MAGIC,
        "BitstreamError--png-signature.vqc": b"\x89PNG\r\n\x1a\n" + bytes(40),
        "BitstreamError--random-bytes.vqc": rng.integers(0, 256, 64, dtype=np.uint8).tobytes(),
        "BitstreamError--trailing-byte.vqc": base + b"\0",
        "BitstreamError--trailing-byte-crc-fixed.vqc": fix_crc(base + b"\0" * 5),
        "BitstreamError--bitflip-magic.vqc": _set(base, 1, bytes([base[1] ^ 1]), crc=False),
        "BitstreamError--bitflip-width.vqc": _set(base, fixed + 12, bytes([base[fixed + 12] ^ 4]), crc=False),
        "BitstreamError--bitflip-payload.vqc": _set(base, len(base) - 6, bytes([base[-6] ^ 0x80]), crc=False),
        "BitstreamError--bitflip-crc.vqc": base[:-1] + bytes([base[-1] ^ 1]),
        "UnsupportedVersionError--version-2.vqc": _set(base, 4, b"\x02"),
        "UnsupportedVersionError--version-255.vqc": _set(base, 4, b"\xff"),
        "BitstreamError--version-0.vqc": _set(base, 4, b"\x00"),
        "ok--flags-packetized-on-a-plain-body.vqc": _set(base, 5, b"\x01"),  # header intact, every packet lost
        "BitstreamError--flags-unknown-bit.vqc": _set(base, 5, b"\x02"),
        "BitstreamError--flags-255.vqc": _set(base, 5, b"\xff"),
        "BitstreamError--model-id-length-0.vqc": _set(base, 6, b"\x00"),
        "BitstreamError--model-id-length-65.vqc": _set(base, 6, b"\x41"),
        "BitstreamError--model-id-length-255.vqc": _set(base, 6, b"\xff"),
        "BitstreamError--model-id-not-utf8.vqc": _set(base, 7, b"\xff\xfe\xfd\xfc"),
        "ModelMismatchError--other-model-id.vqc": _set(base, 7, b"tinz"),
        "ModelMismatchError--other-fingerprint.vqc": _set(base, 7 + n, bytes(8)),
        "BitstreamError--level-0.vqc": _field(base, "level", 0),
        "BitstreamError--level-5-not-a-model-level.vqc": _field(base, "level", 5),
        "BitstreamError--level-max.vqc": _field(base, "level", 2**32 - 1),
        "BitstreamError--width-0.vqc": _field(base, "width", 0),
        "BitstreamError--height-0.vqc": _field(base, "height", 0),
        "BitstreamError--width-max.vqc": _field(base, "width", 2**32 - 1),
        "BitstreamError--grid-mismatch.vqc": _field(base, "grid_width", 5),
        "BitstreamError--grid-max.vqc": _field(_field(base, "grid_width", 65535), "grid_height", 65535),
        "BitstreamError--gigapixel.vqc": _header(codec, 65535, 65535),
        "BitstreamError--one-pixel-over-the-limit.vqc": _header(codec, MAX_PIXELS + 1, 1),
        "BitstreamError--factor-0.vqc": _field(base, "factor", 0),
        "BitstreamError--factor-8.vqc": _header(codec, 57, 40, factor=8),
        "BitstreamError--factor-255.vqc": _header(codec, 57, 40, factor=255),
        "BitstreamError--entropy-model-0.vqc": _field(base, "entropy_model", 0),
        "BitstreamError--entropy-model-255.vqc": _field(base, "entropy_model", 255),
        "BitstreamError--payload-length-max.vqc": _field(base, "payload_length", 2**32 - 1),
        "BitstreamError--payload-length-max-crc-unfixed.vqc": _field(base, "payload_length", 2**32 - 1, crc=False),
        "BitstreamError--payload-length-short.vqc": _field(base, "payload_length", 1),
        "BitstreamError--invalid-payload.vqc": _with_payload(base, b"\xff" * 8),
        "BitstreamError--all-fixed-fields-zero.vqc": fix_crc(base[:fixed] + bytes(PAYLOAD_AT) + b"\0" * 4),
        "BitstreamError--all-fixed-fields-max.vqc": fix_crc(base[:fixed] + b"\xff" * 30 + b"\0" * 4),
    }
    for cut in (4, 6, 7, fixed, fixed + 8, fixed + PAYLOAD_AT, len(base) - 5, len(base) - 1):
        c[f"BitstreamError--truncated-at-{cut}.vqc"] = base[:cut]
    # packetized files: the header must be intact; damaged or missing packets are restored
    packed = codec.encode(photo, level=16, packets=4)
    head_end = fixed + PACKETS_AT + 2 + 4
    first_packet_end = head_end + 6 + int.from_bytes(packed[head_end + 4 : head_end + 6], "little") + 4
    c.update({
        "ok--packetized-4.vqc": packed,
        "ok--packetized-header-only.vqc": packed[:head_end],
        "ok--packetized-truncated-in-a-packet.vqc": packed[:-3],
        "ok--packetized-packet-crc-wrong.vqc": _set(packed, head_end + 7, bytes([packed[head_end + 7] ^ 1]), crc=False),
        "ok--packetized-garbage-between-packets.vqc": packed[:first_packet_end] + b"\xa5\x5a\x00" * 3 + packed[first_packet_end:],
        "ok--packetized-duplicate-packet.vqc": packed[:first_packet_end] + packed[head_end:],
        "ok--packetized-packet-number-out-of-range.vqc": fix_crc(_set(packed, head_end + 2, b"\x09\x00")),
        "ok--packetized-sync-flood.vqc": packed[:head_end] + b"\xa5\x5a" * 4000,
        "BitstreamError--packetized-header-crc-wrong.vqc": _set(packed, head_end - 1, bytes([packed[head_end - 1] ^ 1]), crc=False),
        "BitstreamError--packetized-count-0.vqc": _field(packed, "packets", 0),
        "BitstreamError--packetized-count-max.vqc": _field(packed, "packets", 65535),
        "BitstreamError--packetized-truncated-header.vqc": packed[: head_end - 2],
    })
    # entropy target: u16 count, prior selector, payload (see Targets.entropy)
    uniform64 = StaticPrior.uniform(64)
    symbols = rng.integers(0, 64, 300)
    c["ok--entropy-300-symbols.sym"] = struct.pack("<HB", 300, 3) + encode_symbols(symbols, uniform64)
    c["ok--entropy-count-0.sym"] = struct.pack("<HB", 0, 3)
    c["ok--entropy-count-max-empty-payload.sym"] = struct.pack("<HB", 65535, 4)
    c["ok--entropy-one-symbol-alphabet.sym"] = struct.pack("<HB", 1000, 0) + b"\x01\x02"
    c["ok--entropy-short.sym"] = b"\x07"
    c["BitstreamError--entropy-invalid-words.sym"] = struct.pack("<HB", 1000, 3) + b"\xff" * 8
    c["ok--entropy-unaligned-payload.sym"] = struct.pack("<HB", 50, 4) + b"\x01\x02\x03\x04\x05"
    return c


def make_corpus(folder: Path, codec) -> None:
    """Write :func:`seed_corpus` into ``folder`` (replacing files of the same name)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in seed_corpus(codec).items():
        (folder / name).write_bytes(data)


def read_corpus(folders: list[Path]) -> list[bytes]:
    return [p.read_bytes() for folder in folders if folder.is_dir() for p in sorted(folder.iterdir()) if p.is_file()]


# -- mutations for the random engine ----------------------------------------------------------------

INTERESTING = (0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 63, 64, 127, 128, 255, 256, 4096, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1)


# truncate, bit flips, byte values, random bytes, field edit, header byte, payload, splice, insert/delete:
# weighted towards edits that keep the magic bytes, so most inputs get past the first check
MUTATION_WEIGHTS = (1, 2, 2, 0.3, 3, 1.5, 2, 1, 1)


def mutate(data: bytes, corpus: list[bytes], rnd: random.Random) -> bytes:
    """One to four stacked mutations of ``data``; half of the .vqc-looking results get a fixed CRC."""
    for _ in range(rnd.choice((1, 1, 1, 2, 2, 3, 4))):
        kind = rnd.choices(range(9), weights=MUTATION_WEIGHTS)[0]
        if kind == 0 and data:  # truncate
            data = data[: rnd.randrange(len(data))]
        elif kind == 1 and data:  # bit flips
            buf = bytearray(data)
            for _ in range(rnd.randint(1, 8)):
                buf[rnd.randrange(len(buf))] ^= 1 << rnd.randrange(8)
            data = bytes(buf)
        elif kind == 2 and data:  # bytes set to interesting values
            buf = bytearray(data)
            for _ in range(rnd.randint(1, 4)):
                buf[rnd.randrange(len(buf))] = rnd.choice((0, 1, 0x7F, 0x80, 0xFF, rnd.randrange(256)))
            data = bytes(buf)
        elif kind == 3:  # random bytes
            data = rnd.randbytes(rnd.randrange(200))
        elif kind == 4 and len(data) > 7 and data[:4] == MAGIC and len(data) >= 7 + data[6] + PAYLOAD_AT:  # field edit
            name = rnd.choice(list(_fields(data)))
            offset, fmt = _fields(data)[name]
            limit = 1 << (8 * struct.calcsize(fmt))
            at = 7 + data[6] + offset
            old = int.from_bytes(data[at : at + struct.calcsize(fmt)], "little")
            value = rnd.choice(INTERESTING + (old - 1, old + 1, rnd.randrange(limit))) % limit
            data = _field(data, name, value, crc=False)
        elif kind == 5 and len(data) > 4:  # header byte edit (version, flags, id length) or model id
            at = rnd.choice((4, 5, 6, rnd.randrange(4, min(len(data), 80))))
            data = _set(data, at, bytes([rnd.choice((0, 1, 2, 64, 65, 255, rnd.randrange(256)))]), crc=False)
        elif kind == 6 and len(data) > 7 and data[:4] == MAGIC and not data[5] & FLAG_PACKETIZED and \
                len(data) >= 7 + data[6] + PAYLOAD_AT + 4:  # payload
            data = _with_payload(data, rnd.randbytes(rnd.randrange(64)))
        elif kind == 7:  # splice with another input
            other = rnd.choice(corpus)
            data = data[: rnd.randint(0, len(data))] + other[rnd.randint(0, len(other)) :]
        elif kind == 8 and data:  # insert or delete a run of bytes
            at = rnd.randrange(len(data))
            if rnd.random() < 0.5:
                data = data[:at] + rnd.randbytes(rnd.randint(1, 16)) + data[at:]
            else:
                data = data[:at] + data[at + rnd.randint(1, 16) :]
    return fix_crc(data) if rnd.random() < 0.5 else data


# -- running ------------------------------------------------------------------------------------


@dataclass
class Report:
    """What a fuzzing run saw."""

    inputs: int = 0
    crashes: int = 0
    hangs: int = 0
    over_memory: int = 0
    slowest_s: float = 0.0
    outcomes: dict[str, Counter] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def summary(self, args: argparse.Namespace) -> str:
        elapsed = time.monotonic() - self.started
        lines = [
            f"fuzz: engine={args.engine} target={args.target} inputs={self.inputs} crashes={self.crashes} "
            f"hangs={self.hangs} over_memory={self.over_memory} elapsed={elapsed:.1f}s "
            f"slowest_input={self.slowest_s:.3f}s peak_rss={_peak_rss_mb():.0f}MB"
        ]
        for target, counts in self.outcomes.items():
            lines.append(f"  {target}: " + ", ".join(f"{k}={v}" for k, v in counts.most_common()))
        return "\n".join(lines)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _save(artifacts: Path, kind: str, data: bytes) -> Path:
    artifacts.mkdir(parents=True, exist_ok=True)
    path = artifacts / f"{kind}-{hashlib.sha1(data).hexdigest()}"
    path.write_bytes(data)
    return path


def run_input(targets: dict[str, Callable[[bytes], str]], data: bytes, report: Report, args: argparse.Namespace,
              error: type) -> list[str]:
    """Run one input through the targets, record outcomes; returns failure descriptions (empty if none)."""
    failures = []
    report.inputs += 1
    for name, fn in targets.items():
        start = time.monotonic()
        try:
            outcome, exc = classify(fn, data, error)
        except Hang:
            outcome, exc = "HANG", None
        spent = time.monotonic() - start
        report.slowest_s = max(report.slowest_s, spent)
        if outcome == "HANG" or spent > args.timeout:
            report.hangs += 1
            failures.append(f"{name}: hang ({spent:.1f}s) -> {_save(args.artifacts, 'hang', data)}")
        elif outcome == "CRASH":
            report.crashes += 1
            detail = "".join(traceback.format_exception(exc)).rstrip()
            failures.append(f"{name}: crash -> {_save(args.artifacts, 'crash', data)}\n{detail}")
        if _peak_rss_mb() > args.rss_limit_mb:
            report.over_memory += 1
            failures.append(f"{name}: peak RSS {_peak_rss_mb():.0f} MB -> {_save(args.artifacts, 'oom', data)}")
        report.outcomes.setdefault(name, Counter())[outcome] += 1
    return failures


def _alarm(_signum, _frame) -> None:
    raise Hang()


def inputs_random(corpus: list[bytes], rnd: random.Random) -> Iterator[bytes]:
    """The corpus once as is, then mutations of it forever."""
    yield from corpus
    while True:
        yield mutate(rnd.choice(corpus), corpus, rnd)


def fuzz_random(args: argparse.Namespace, targets: Targets) -> Report:
    """The engine CI runs: seeded mutations of the corpus until ``--runs`` or ``--seconds`` is reached."""
    chosen = _chosen(targets, args.target)
    corpus = read_corpus(args.corpus) or [b""]
    rnd = random.Random(args.seed)
    report = Report()
    deadline = time.monotonic() + args.seconds if args.seconds else None
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for data in inputs_random(corpus, rnd):
            if (args.runs and report.inputs >= args.runs) or (deadline and time.monotonic() > deadline):
                break
            signal.setitimer(signal.ITIMER_REAL, args.timeout * 2)
            try:
                failures = run_input(chosen, data, report, args, targets.error)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            for failure in failures:
                print(f"fuzz: FAILURE {failure}", file=sys.stderr, flush=True)
            if report.over_memory:
                break  # the peak RSS only grows: later inputs cannot be judged
            if args.progress and report.inputs % args.progress == 0:
                print(report.summary(args).splitlines()[0], file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGALRM, previous)
    return report


def fuzz_atheris(args: argparse.Namespace, libfuzzer_args: list[str]) -> None:
    """Coverage-guided fuzzing; prints the summary and exits after ``--runs`` inputs (never returns)."""
    import atheris

    targets = build_targets(instrument=True)
    chosen = _chosen(targets, args.target)
    report = Report()
    work = args.artifacts / "corpus"  # libFuzzer adds new inputs to the first folder; the seeds stay untouched
    work.mkdir(parents=True, exist_ok=True)

    def one_input(data: bytes) -> None:
        failures = run_input(chosen, data, report, args, targets.error)
        for failure in failures:
            print(f"fuzz: FAILURE {failure}", file=sys.stderr, flush=True)
        if report.inputs >= args.runs or report.over_memory:
            print(report.summary(args), flush=True)
            os._exit(1 if report.crashes or report.hangs or report.over_memory else 0)  # libFuzzer never returns
        if args.progress and report.inputs % args.progress == 0:
            print(report.summary(args).splitlines()[0], file=sys.stderr, flush=True)

    argv = [sys.argv[0], f"-timeout={max(1, int(args.timeout * 4))}", f"-rss_limit_mb={int(args.rss_limit_mb)}",
            f"-artifact_prefix={args.artifacts}/", "-max_len=4096", *libfuzzer_args, str(work), *map(str, args.corpus)]
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


def _chosen(targets: Targets, name: str) -> dict[str, Callable[[bytes], str]]:
    every = targets.by_name()
    return every if name == "all" else {name: every[name]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["random", "atheris"], default="random")
    parser.add_argument("--target", choices=["container", "codec", "entropy", "all"], default="all")
    parser.add_argument("--runs", type=int, default=0, help="stop after this many inputs (atheris: required)")
    parser.add_argument("--seconds", type=float, default=0, help="random engine: stop after this many seconds")
    parser.add_argument("--corpus", type=Path, action="append", help=f"seed folder(s) (default {SEED_CORPUS})")
    parser.add_argument("--seed", type=int, default=0, help="random engine: seed of the mutations")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds one input may take per target; an input is stopped at 2x this (random engine: "
                        "an alarm) or 4x (atheris: libFuzzer's -timeout)")
    parser.add_argument("--rss-limit-mb", type=float, default=3072, help="peak RSS allowed (torch alone takes ~500 MB)")
    parser.add_argument("--artifacts", type=Path, default=ROOT / "runs" / "fuzz", help="where failing inputs are saved")
    parser.add_argument("--progress", type=int, default=0, help="print a status line every N inputs")
    parser.add_argument("--make-corpus", type=Path, metavar="DIR", help="write the seed corpus into DIR and exit")
    args, libfuzzer_args = parser.parse_known_args(argv)
    args.corpus = args.corpus or [SEED_CORPUS]
    if args.make_corpus:
        make_corpus(args.make_corpus, tiny_codec())
        print(f"fuzz: wrote {len(list(args.make_corpus.iterdir()))} files to {args.make_corpus}")
        return 0
    if args.engine == "atheris":
        if not args.runs:
            parser.error("--engine atheris needs --runs")
        fuzz_atheris(args, libfuzzer_args)
    if libfuzzer_args:
        parser.error(f"unknown arguments {libfuzzer_args} (libFuzzer flags need --engine atheris)")
    if not args.runs and not args.seconds:
        parser.error("give --runs or --seconds")
    report = fuzz_random(args, build_targets())
    print(report.summary(args), flush=True)
    return 1 if report.crashes or report.hangs or report.over_memory else 0


if __name__ == "__main__":
    raise SystemExit(main())
