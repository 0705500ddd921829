"""Fuzz the ``.vqc`` container parser, the whole decoder and the entropy decoder.

Contract: whatever bytes arrive, decoding ends in a result or a :class:`vqcodec.VQCodecError`.
Any other exception, a failed property check, an input slower than ``--timeout`` or a peak RSS
above ``--rss-limit-mb`` is a failure, and the input is saved under ``--artifacts``. Targets:
``container`` (``read``/``unpack``; a plain file that parses re-packs to the same bytes),
``codec`` (``Codec.decode`` with the tiny model of :mod:`.models`, on the input as is and with
its CRCs fixed, so mutations reach the header checks, packets, entropy decoders and network),
``entropy`` (``decode_symbols``: u16 count, a prior selector byte, then the payload) and
``context`` (the context-model decoder: grid size, level, part count, then the payloads).

Engines: ``random`` (seeded mutations of the corpus; what CI runs) and ``atheris`` (coverage-guided,
``pip install atheris``; ``-timeout``/``-rss_limit_mb`` go to libFuzzer)::

    python -m vqcodec.testing.fuzz --runs 100000              # or python scripts/fuzz.py ...
    python -m vqcodec.testing.fuzz --engine atheris --target codec --runs 100000
    python -m vqcodec.testing.fuzz --make-corpus tests/fuzz_corpus

Corpus files are named ``<outcome>--<what>.<ext>``: ``outcome`` is ``ok``, the error class the
primary target (``.vqc``: codec, ``.sym``: entropy, ``.ctx``: context) must raise, or ``any`` (only "no crash").
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import random
import re
import resource
import signal
import struct
import sys
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from ..codec import Codec, container
from ..entropy import StaticPrior, decode_symbols, encode_symbols
from ..errors import VQCodecError
from ..weights import LoadedModel, fingerprint, model_tensors
from .models import skewed_priors, tiny_context, tiny_model

ROOT = Path(__file__).resolve().parents[2]  # the source checkout, where the defaults below live
SEED_CORPUS = ROOT / "tests" / "fuzz_corpus"
MAX_PIXELS = 1 << 14  # the fuzz codec's pixel limit: keeps every decode to a few milliseconds
MODEL_ID = "tiny"

# -- the container layout, read off vqcodec.codec.container ------------------------------------------

VERSION_AT = len(container.MAGIC)  # then the flags byte, the model id length N and the model id
FLAGS_AT, ID_LENGTH_AT, ID_AT = VERSION_AT + 1, VERSION_AT + 2, VERSION_AT + 3
PLAIN, PACKETIZED = container.FIXED, container.FIXED_PACKETIZED  # the fixed fields after the model id
CRC = struct.Struct("<I")


def _layout(data: bytes) -> tuple[int, struct.Struct]:
    """Where the fixed header fields of a .vqc-looking ``data`` start, and their struct."""
    return ID_AT + data[ID_LENGTH_AT], PACKETIZED if data[FLAGS_AT] & container.FLAG_PACKETIZED else PLAIN


def _head_end(data: bytes) -> int:
    """Where a .vqc-looking ``data``'s header fields end: after the extension records from version 2 on."""
    at, fixed = _layout(data)
    end = at + fixed.size
    if data[VERSION_AT] >= 2 and len(data) >= end + container.EXTENSIONS.size:
        end += container.EXTENSIONS.size + container.EXTENSIONS.unpack_from(data, end)[0]
    return end


def header_fields(fixed: struct.Struct) -> dict[str, tuple[int, str]]:
    """Name → (offset, struct format) of the fixed fields: ``Header``'s fields from the fingerprint
    on, then ``payload_length`` (plain files) or ``packets`` (packetized files)."""
    names = [f.name for f in dataclasses.fields(container.Header)][1:9]
    names.append("packets" if fixed is PACKETIZED else "payload_length")
    codes = ["<" + code for code in re.findall(r"\d*[a-zA-Z]", fixed.format.lstrip("<"))]
    sizes = [struct.calcsize(code) for code in codes]
    return {name: (sum(sizes[:i]), code) for i, (name, code) in enumerate(zip(names, codes, strict=True))}


def _packets(data: bytes, pos: int) -> Iterator[tuple[int, int]]:
    """(start, end) of the packets from ``pos`` on, walked by their lengths (sync and number unchecked)."""
    while pos + container.PACKET_OVERHEAD <= len(data):
        end = pos + container.PACKET_OVERHEAD + container.PACKET_HEAD.unpack_from(data, pos)[2]
        if end > len(data):
            return
        yield pos, end
        pos = end


def fix_crcs(data: bytes) -> bytes:
    """``data`` with valid CRC-32s where it starts like a .vqc: the last 4 bytes of a plain file; the
    header's and those of the packets that fit for a packetized one."""
    if len(data) < ID_AT + CRC.size or data[:VERSION_AT] != container.MAGIC:
        return data
    if _layout(data)[1] is PLAIN:
        return data[:-4] + CRC.pack(zlib.crc32(data[:-4]))
    head_end = _head_end(data)
    if len(data) < head_end + 4:
        return data
    out = bytearray(data)
    out[head_end : head_end + 4] = CRC.pack(head_crc := zlib.crc32(data[:head_end]))
    for start, end in _packets(out, head_end + 4):
        out[end - 4 : end] = CRC.pack(zlib.crc32(out[start : end - 4], head_crc))
    return bytes(out)


def patch(data: bytes, at: int, value: bytes, crc: bool = True) -> bytes:
    """``value`` written over ``data`` at ``at``, then the CRCs fixed unless ``crc`` is false."""
    out = data[:at] + value + data[at + len(value) :]
    return fix_crcs(out) if crc else out


def set_field(data: bytes, name: str, value: int, crc: bool = True) -> bytes:
    """One fixed header field set in raw bytes (the rest of the file may be broken)."""
    at, fixed = _layout(data)
    offset, code = header_fields(fixed)[name]
    return patch(data, at + offset, struct.pack(code, value), crc)


def with_payload(data: bytes, payload: bytes) -> bytes:
    """A plain file's payload replaced, its length and CRC fixed."""
    at = _head_end(data)
    return set_field(data[:at] + payload + bytes(CRC.size), "payload_length", len(payload))


# -- the targets ---------------------------------------------------------------------------------------


class Hang(Exception):
    """Raised by the per-input alarm of the random engine."""


def tiny_codec(max_pixels: int = MAX_PIXELS, context: bool = True) -> Codec:
    """The tests' tiny taef2 model (seed 0, levels 64/16/4, skewed priors, and with ``context`` its
    tiny context model) as an in-memory Codec."""
    model = tiny_model(name=MODEL_ID)
    frequencies = skewed_priors(model)
    priors = {level: StaticPrior(f.numpy()) for level, f in frequencies.items()}
    loaded = LoadedModel(model, priors, fingerprint(model_tensors(model, frequencies)))
    # one thread: on a busy machine, waiting for a second core made decodes 50x slower
    return Codec(loaded, MODEL_ID, device="cpu", max_pixels=max_pixels, min_threads=1,
                 context=tiny_context(model) if context else None)


class Targets:
    """The functions under test, bound to one tiny codec; each returns a short outcome name."""

    def __init__(self, codec: Codec | None = None) -> None:
        self.codec = codec or tiny_codec()
        self.priors = [StaticPrior.uniform(n) for n in (1, 2, 3, 64, 4096, 65536)]
        self.priors += [self.codec.entropy.for_level(level).prior for level in self.codec.levels]
        self.priors.append(StaticPrior.from_counts(np.array([1e12] + [1.0] * 255)))  # one symbol all but certain

    def container(self, data: bytes) -> str:
        """The parser alone; what it accepts must be what ``pack`` writes."""
        stream = container.read(data, MAX_PIXELS)
        if stream.header.packetized:
            assert set(stream.packets) <= set(range(stream.header.packets)), "packet number out of range"
        else:
            assert container.pack(*container.unpack(data, MAX_PIXELS)) == data, "a parsed header does not re-pack"
        return "ok"

    def decode(self, data: bytes) -> str:
        """The whole decoder, on ``data`` and on ``data`` with its CRCs fixed (past the checksums)."""
        fixed = fix_crcs(data)
        if fixed != data and (crash := classify(self._decode, fixed)[1]) is not None:
            raise crash
        return self._decode(data)

    def _decode(self, data: bytes) -> str:
        image = self.codec.decode(data)
        header = container.read(data, MAX_PIXELS).header
        assert image.size == (header.width, header.height) and image.mode == "RGB", "decoded image has the wrong size"
        return "ok"

    def entropy(self, data: bytes) -> str:
        """``decode_symbols`` on a u16 count, a prior chosen by one byte, and the rest as payload."""
        count = int.from_bytes(data[:2], "little")
        prior = self.priors[data[2] % len(self.priors)] if len(data) > 2 else self.priors[0]
        symbols = decode_symbols(data[3:], count, prior)
        assert symbols.shape == (count,), "wrong number of symbols"
        assert count == 0 or (0 <= int(symbols.min()) and int(symbols.max()) < prior.size), "symbol out of range"
        return "ok"

    def context(self, data: bytes) -> str:
        """The context-model decoder on a grid of ``data[0] × data[1]`` (each 1…64), the level
        ``data[2]`` selects, ``data[3]`` parts (1…8, interleaved as packets) and the rest of the
        bytes split evenly into their payloads."""
        head = (data + bytes(4))[:4]
        shape = (1 + head[0] % 64, 1 + head[1] % 64)
        levels = sorted(self.codec.levels)
        model = self.codec.entropy.for_level(levels[head[2] % len(levels)], "context")
        count = 1 + head[3] % 8
        parts = container.packet_assignment(*shape, count)
        body, size = data[4:], -(-len(data[4:]) // count)
        grid, ok = model.decode([body[k * size : (k + 1) * size] for k in range(count)], parts)
        assert grid.shape == shape and len(ok) == count, "wrong grid shape"
        assert (grid >= 0).all() and (grid < model.prior.size).all(), "symbol out of range"
        return "ok"

    def chosen(self, name: str = "all") -> dict[str, Callable[[bytes], str]]:
        """The targets by name: one of them, or ``all``."""
        every = {"container": self.container, "codec": self.decode, "entropy": self.entropy, "context": self.context}
        return every if name == "all" else {name: every[name]}


def classify(fn: Callable[[bytes], str], data: bytes) -> tuple[str, BaseException | None]:
    """Run ``fn``: ("ok", None), (VQCodecError class name, None), or ("CRASH", the exception)."""
    try:
        return fn(data), None
    except VQCodecError as exc:
        return type(exc).__name__, None
    except (KeyboardInterrupt, Hang, SystemExit):
        raise
    except BaseException as exc:  # noqa: B036 - pyo3 panics derive from BaseException; they are crashes too
        return "CRASH", exc


# -- the seed corpus -----------------------------------------------------------------------------------


def seed_corpus(codec: Codec) -> dict[str, bytes]:
    """Interesting inputs by name (see the module docstring for the naming rule)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:57]
    photo = (np.stack([xx * 4, yy * 6, (xx + yy) * 2], axis=-1) % 256).astype(np.uint8)
    base = codec.encode(photo, level=16, entropy="static", granularity="16").data
    head, payload = container.unpack(base)
    fixed = _layout(base)[0]

    def edit(**changes: object) -> bytes:
        return container.pack(dataclasses.replace(head, **changes), payload)

    def sized(width: int, height: int, factor: int = 16) -> bytes:
        grid = dict(grid_width=-(-width // factor), grid_height=-(-height // factor))
        return container.pack(dataclasses.replace(head, width=width, height=height, factor=factor, **grid), b"")

    def flip(data: bytes, at: int, bits: int = 1) -> bytes:
        return patch(data, at, bytes([data[at] ^ bits]), crc=False)

    c = {
        "ok--level16-57x40.vqc": base,
        "ok--level4-1x1.vqc": codec.encode(rng.integers(0, 256, (1, 1, 3), dtype=np.uint8), level=4, entropy="static",
                                           granularity="16").data,
        "ok--level64-33x17.vqc": codec.encode(rng.integers(0, 256, (17, 33, 3), dtype=np.uint8), level=64,
                                              entropy="static", granularity="16").data,
        "ok--empty-payload.vqc": with_payload(base, b""),
        "ok--random-payload.vqc": with_payload(base, bytes(range(7, 40))),
        "BitstreamError--tall-1-pixel-wide-at-the-limit.vqc": sized(1, MAX_PIXELS),
        "BitstreamError--wide-at-the-limit.vqc": sized(MAX_PIXELS, 1),
        "BitstreamError--empty.vqc": b"",
        "BitstreamError--magic-only.vqc": container.MAGIC,
        "BitstreamError--png-signature.vqc": b"\x89PNG\r\n\x1a\n" + bytes(40),
        "BitstreamError--random-bytes.vqc": rng.integers(0, 256, 64, dtype=np.uint8).tobytes(),
        "BitstreamError--trailing-byte.vqc": base + b"\0",
        "BitstreamError--trailing-byte-crc-fixed.vqc": fix_crcs(base + b"\0" * 5),
        "BitstreamError--bitflip-magic.vqc": flip(base, 1),
        "BitstreamError--bitflip-width.vqc": flip(base, fixed + header_fields(PLAIN)["width"][0], 4),
        "BitstreamError--bitflip-payload.vqc": flip(base, len(base) - 6, 0x80),
        "BitstreamError--bitflip-crc.vqc": flip(base, len(base) - 1),
        "UnsupportedVersionError--version-6.vqc": patch(base, VERSION_AT, b"\x06"),
        "any--version-2-on-a-version-1-body.vqc": patch(base, VERSION_AT, b"\x02"),
        "UnsupportedVersionError--version-255.vqc": patch(base, VERSION_AT, b"\xff"),
        "BitstreamError--version-0.vqc": patch(base, VERSION_AT, b"\x00"),
        "ok--flags-packetized-on-a-plain-body.vqc": patch(base, FLAGS_AT, b"\x01"),  # header intact, every packet lost
        "BitstreamError--flags-unknown-bit.vqc": patch(base, FLAGS_AT, b"\x02"),
        "BitstreamError--flags-255.vqc": patch(base, FLAGS_AT, b"\xff"),
        "BitstreamError--model-id-length-0.vqc": patch(base, ID_LENGTH_AT, b"\x00"),
        "BitstreamError--model-id-length-65.vqc": patch(base, ID_LENGTH_AT, b"\x41"),
        "BitstreamError--model-id-length-255.vqc": patch(base, ID_LENGTH_AT, b"\xff"),
        "BitstreamError--model-id-not-utf8.vqc": patch(base, ID_AT, b"\xff\xfe\xfd\xfc"),
        "ModelMismatchError--other-model-id.vqc": edit(model_id="tinz"),
        "ModelMismatchError--other-fingerprint.vqc": edit(fingerprint=bytes(8)),
        "BitstreamError--level-0.vqc": edit(level=0),
        "BitstreamError--level-5-not-a-model-level.vqc": edit(level=5),
        "BitstreamError--level-max.vqc": edit(level=2**32 - 1),
        "BitstreamError--width-0.vqc": edit(width=0),
        "BitstreamError--height-0.vqc": edit(height=0),
        "BitstreamError--width-max.vqc": edit(width=2**32 - 1),
        "BitstreamError--grid-mismatch.vqc": edit(grid_width=5),
        "BitstreamError--grid-max.vqc": edit(grid_width=65535, grid_height=65535),
        "BitstreamError--gigapixel.vqc": sized(65535, 65535),
        "BitstreamError--one-pixel-over-the-limit.vqc": sized(MAX_PIXELS + 1, 1),
        "BitstreamError--factor-0.vqc": edit(factor=0),
        "BitstreamError--factor-8.vqc": sized(57, 40, factor=8),
        "BitstreamError--factor-255.vqc": sized(57, 40, factor=255),
        "BitstreamError--entropy-model-0.vqc": edit(entropy_model=0),
        "BitstreamError--entropy-model-255.vqc": edit(entropy_model=255),
        "BitstreamError--payload-length-max.vqc": set_field(base, "payload_length", 2**32 - 1),
        "BitstreamError--payload-length-max-crc-unfixed.vqc": set_field(base, "payload_length", 2**32 - 1, crc=False),
        "BitstreamError--payload-length-short.vqc": set_field(base, "payload_length", 1),
        "BitstreamError--invalid-payload.vqc": with_payload(base, b"\xff" * 8),
        "BitstreamError--all-fixed-fields-zero.vqc": fix_crcs(base[:fixed] + bytes(PLAIN.size) + bytes(4)),
        "BitstreamError--all-fixed-fields-max.vqc": fix_crcs(base[:fixed] + b"\xff" * PLAIN.size + bytes(4)),
    }
    for cut in (VERSION_AT, ID_LENGTH_AT, ID_AT, fixed, fixed + 8, fixed + PLAIN.size, len(base) - 5, len(base) - 1):
        c[f"BitstreamError--truncated-at-{cut}.vqc"] = base[:cut]
    # version 2: the coded-size extension record (type, length, width, height) ends the header
    resized = codec.encode(photo, level=16, scale=0.5, entropy="static", granularity="16").data
    record = _head_end(resized) - container.RECORD.size - container.CODED_SIZE.size
    resized_head, resized_payload = container.unpack(resized)
    c.update({
        "ok--resized-57x40-from-28x20.vqc": resized,
        "ok--resized-packetized-3.vqc": codec.encode(photo, level=16, scale=0.5, packets=3, entropy="static", granularity="16").data,
        "ok--resized-empty-payload.vqc": with_payload(resized, b""),
        "BitstreamError--resized-coded-size-0.vqc": patch(resized, record + container.RECORD.size, bytes(8)),
        "BitstreamError--resized-coded-larger-than-image.vqc": patch(container.pack(  # in version 2
            dataclasses.replace(resized_head, coded_width=58, grid_width=4), resized_payload), VERSION_AT, b"\x02"),
        "BitstreamError--resized-extension-unknown-type.vqc": patch(resized, record, b"\x09"),
        "BitstreamError--resized-extension-record-length-max.vqc": patch(resized, record + 1, b"\xff\xff"),
        "BitstreamError--resized-extension-bytes-max.vqc": patch(resized, record - 2, b"\xff\xff"),
        "BitstreamError--resized-extension-bytes-0.vqc": patch(resized, record - 2, b"\x00\x00"),
    })
    # packetized files: the header must be intact; damaged or missing packets are restored
    packed = codec.encode(photo, level=16, packets=4, entropy="static", granularity="16").data
    head_end = fixed + PACKETIZED.size + CRC.size
    first_end = next(_packets(packed, head_end))[1]
    sync, _, length = container.PACKET_HEAD.unpack_from(packed, head_end)
    c.update({
        "ok--packetized-4.vqc": packed,
        "ok--packetized-header-only.vqc": packed[:head_end],
        "ok--packetized-truncated-in-a-packet.vqc": packed[:-3],
        "ok--packetized-packet-crc-wrong.vqc": flip(packed, head_end + 7),
        "ok--packetized-garbage-between-packets.vqc": packed[:first_end] + b"\xa5\x5a\x00" * 3 + packed[first_end:],
        "ok--packetized-duplicate-packet.vqc": packed[:first_end] + packed[head_end:],
        "ok--packetized-packet-number-out-of-range.vqc": patch(packed, head_end, container.PACKET_HEAD.pack(sync, 9, length)),
        "ok--packetized-sync-flood.vqc": packed[:head_end] + container.PACKET_SYNC * 4000,
        "BitstreamError--packetized-header-crc-wrong.vqc": flip(packed, head_end - 1),
        "BitstreamError--packetized-count-0.vqc": set_field(packed, "packets", 0),
        "BitstreamError--packetized-count-max.vqc": set_field(packed, "packets", 65535),
        "BitstreamError--packetized-truncated-header.vqc": packed[: head_end - 2],
    })
    # version 3: the context entropy model, named by its fingerprint in extension record 2
    ctx = codec.encode(photo, level=16, entropy="context", granularity="16").data
    ctx_head, ctx_payload = container.unpack(ctx)
    ctx_record = _head_end(ctx) - container.RECORD.size - container.FINGERPRINT_BYTES
    c.update({
        "ok--context-level16-57x40.vqc": ctx,
        "ok--context-level64-33x17.vqc": codec.encode(np.random.default_rng(1).integers(0, 256, (17, 33, 3), dtype=np.uint8),
                                                      level=64, entropy="context", granularity="16").data,
        "ok--context-resized-packetized-3.vqc": codec.encode(photo, level=16, scale=0.5, packets=3, entropy="context",
                                                             granularity="16").data,
        "ok--context-empty-payload.vqc": with_payload(ctx, b""),
        "ok--context-random-payload.vqc": with_payload(ctx, bytes(range(3, 60))),
        "ModelMismatchError--context-other-tables.vqc": patch(ctx, ctx_record + container.RECORD.size, bytes(8)),
        "BitstreamError--context-record-with-static-id.vqc": container.pack(dataclasses.replace(ctx_head, entropy_model=1),
                                                                            ctx_payload),
        "BitstreamError--context-id-without-record.vqc": edit(entropy_model=container.CONTEXT_ENTROPY_ID),
        "BitstreamError--context-record-in-version-2.vqc": patch(ctx, VERSION_AT, b"\x02"),
        "BitstreamError--context-record-length-7.vqc": patch(ctx, ctx_record + 1, b"\x07\x00"),
    })
    # version 4: a granularity map in extension record 3, and coded sizes above the image's
    tiled = np.tile(photo, (2, 2, 1))
    mixed = codec.encode(tiled, level=16, lam=0.0).data
    mixed_head = container.read_header(mixed)
    map_record = _head_end(mixed) - len(mixed_head.granularity_map) - container.RECORD.size
    c.update({
        "ok--mixed-level16-114x80.vqc": mixed,
        "ok--mixed-static-packetized-4.vqc": codec.encode(tiled, level=16, lam=0.0, entropy="static", packets=4).data,
        "ok--mixed-upscaled-1.25.vqc": codec.encode(tiled, level=16, lam=0.0, scale=1.25).data,
        "ok--mixed-map-all-ones.vqc": patch(mixed, map_record + container.RECORD.size, b"\xff" * len(mixed_head.granularity_map)),
        "ok--mixed-empty-payload.vqc": with_payload(mixed, b""),
        "BitstreamError--granularity-record-in-version-3.vqc": patch(mixed, VERSION_AT, b"\x03"),
        "BitstreamError--granularity-record-length-0.vqc": patch(mixed, map_record + 1, b"\0\0"),
        "BitstreamError--upscaled-in-version-2.vqc": patch(codec.encode(photo, level=16, scale=1.5, granularity="16").data,
                                                           VERSION_AT, b"\x02"),
        "BitstreamError--coded-size-over-twice-the-image.vqc": edit(coded_width=3 * head.width, coded_height=head.height),
    })
    # version 5: a tone layer in extension record 4
    toned = codec.encode(photo, level=16, entropy="static", granularity="16", tone="on").data
    tone_head = container.read_header(toned)
    tone_record = _head_end(toned) - len(tone_head.tone) - container.RECORD.size
    tone_value = tone_record + container.RECORD.size
    c.update({
        "ok--tone-layer.vqc": toned,
        "ok--tone-layer-mixed-packetized-4.vqc": codec.encode(tiled, level=16, lam=0.0, packets=4, tone="on").data,
        "BitstreamError--tone-values-all-ones.vqc": patch(toned, tone_value + 3, b"\xff" * (len(tone_head.tone) - 3)),
        "ok--tone-block-256-step-255.vqc": patch(toned, tone_value, b"\x08\xff\xff"),
        "BitstreamError--tone-record-in-version-4.vqc": patch(toned, VERSION_AT, b"\x04"),
        "BitstreamError--tone-record-length-0.vqc": patch(toned, tone_record + 1, b"\0\0"),
        "BitstreamError--tone-block-8.vqc": patch(toned, tone_value, b"\x03"),
        "BitstreamError--tone-block-512.vqc": patch(toned, tone_value, b"\x09"),
        "BitstreamError--tone-step-0.vqc": patch(toned, tone_value + 1, b"\x00"),
        "BitstreamError--tone-truncated.vqc": container.pack(dataclasses.replace(head, tone=tone_head.tone[:3]), payload),
    })
    # entropy target: u16 count, prior selector, payload (see Targets.entropy)
    c["ok--entropy-300-symbols.sym"] = struct.pack("<HB", 300, 3) + encode_symbols(rng.integers(0, 64, 300), StaticPrior.uniform(64))
    c["ok--entropy-count-0.sym"] = struct.pack("<HB", 0, 3)
    c["ok--entropy-count-max-empty-payload.sym"] = struct.pack("<HB", 65535, 4)
    c["ok--entropy-one-symbol-alphabet.sym"] = struct.pack("<HB", 1000, 0) + b"\x01\x02"
    c["ok--entropy-short.sym"] = b"\x07"
    c["BitstreamError--entropy-invalid-words.sym"] = struct.pack("<HB", 1000, 3) + b"\xff" * 8
    c["ok--entropy-unaligned-payload.sym"] = struct.pack("<HB", 50, 4) + b"\x01\x02\x03\x04\x05"
    # context target: grid height, width, level selector, part count, payload (see Targets.context)
    grid = rng.integers(0, 16, (9, 7))
    c["ok--context-9x7.ctx"] = bytes([9, 7, 1, 1]) + codec.entropy.for_level(16, "context").encode(grid)[0]
    c["ok--context-1x1-empty.ctx"] = bytes([1, 1, 0, 1])
    c["ok--context-64x64-4-parts-random.ctx"] = bytes([64, 64, 2, 4]) + rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
    c["ok--context-short.ctx"] = b"\x05"
    return c


# -- mutations for the random engine -----------------------------------------------------------------

INTERESTING = (0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 63, 64, 127, 128, 255, 256, 4096, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1)
# truncate, bit flips, byte values, random bytes, field edit, header byte, payload, splice, insert/delete:
# weighted towards edits that keep the magic bytes, so most inputs get past the first check
MUTATION_WEIGHTS = (1, 2, 2, 0.3, 3, 1.5, 2, 1, 1)


def mutate(data: bytes, corpus: list[bytes], rnd: random.Random) -> bytes:
    """One to four stacked mutations of ``data``; half of the results get their CRCs fixed."""
    for _ in range(rnd.choice((1, 1, 1, 2, 2, 3, 4))):
        kind = rnd.choices(range(9), weights=MUTATION_WEIGHTS)[0]
        at, fixed = _layout(data) if len(data) > ID_AT and data[:VERSION_AT] == container.MAGIC else (len(data), None)
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
        elif kind == 4 and fixed is not None and len(data) >= at + fixed.size:  # a fixed header field
            name, (offset, code) = rnd.choice(list(header_fields(fixed).items())[1:])  # not the fingerprint
            limit = 1 << 8 * struct.calcsize(code)
            (old,) = struct.unpack_from(code, data, at + offset)
            data = set_field(data, name, rnd.choice(INTERESTING + (old - 1, old + 1, rnd.randrange(limit))) % limit, crc=False)
        elif kind == 5 and len(data) > VERSION_AT:  # version, flags, id length or a model id byte
            at = rnd.choice((VERSION_AT, FLAGS_AT, ID_LENGTH_AT, rnd.randrange(VERSION_AT, min(len(data), 80))))
            data = patch(data, at, bytes([rnd.choice((0, 1, 2, 64, 65, 255, rnd.randrange(256)))]), crc=False)
        elif kind == 6 and fixed is PLAIN and len(data) >= at + fixed.size + CRC.size:  # payload
            data = with_payload(data, rnd.randbytes(rnd.randrange(64)))
        elif kind == 7:  # splice with another input
            other = rnd.choice(corpus)
            data = data[: rnd.randint(0, len(data))] + other[rnd.randint(0, len(other)) :]
        elif kind == 8 and data:  # insert or delete a run of bytes
            at = rnd.randrange(len(data))
            insert = rnd.randbytes(rnd.randint(1, 16)) if rnd.random() < 0.5 else b""
            data = data[:at] + insert + data[at + (0 if insert else rnd.randint(1, 16)) :]
    return fix_crcs(data) if rnd.random() < 0.5 else data


# -- running -------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Report:
    """What a fuzzing run saw: outcomes by target, failures by kind ("crash", "hang", "oom")."""

    inputs: int = 0
    slowest_s: float = 0.0
    failures: Counter = dataclasses.field(default_factory=Counter)
    outcomes: dict[str, Counter] = dataclasses.field(default_factory=dict)
    started: float = dataclasses.field(default_factory=time.monotonic)

    def fail(self, artifacts: Path, kind: str, data: bytes, what: str, detail: str = "") -> None:
        """Count a failure, save its input under ``artifacts`` and say so on stderr."""
        self.failures[kind] += 1
        artifacts.mkdir(parents=True, exist_ok=True)
        path = artifacts / f"{kind}-{hashlib.sha1(data).hexdigest()}"
        path.write_bytes(data)
        print(f"fuzz: FAILURE {what} -> {path}{detail}", file=sys.stderr, flush=True)

    def summary(self, args: argparse.Namespace) -> str:
        lines = [
            f"fuzz: engine={args.engine} target={args.target} inputs={self.inputs} crashes={self.failures['crash']} "
            f"hangs={self.failures['hang']} over_memory={self.failures['oom']} elapsed={time.monotonic() - self.started:.1f}s "
            f"slowest_input={self.slowest_s:.3f}s peak_rss={_peak_rss_mb():.0f}MB"
        ]
        lines += [f"  {name}: " + ", ".join(f"{k}={v}" for k, v in n.most_common()) for name, n in self.outcomes.items()]
        return "\n".join(lines)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def run_input(targets: dict[str, Callable[[bytes], str]], data: bytes, report: Report, args: argparse.Namespace) -> None:
    """Run one input through the targets and record what happened."""
    report.inputs += 1
    for name, fn in targets.items():
        start = time.monotonic()
        try:
            outcome, exc = classify(fn, data)
        except Hang:
            outcome, exc = "HANG", None
        spent = time.monotonic() - start
        report.slowest_s = max(report.slowest_s, spent)
        if outcome == "HANG" or spent > args.timeout:
            report.fail(args.artifacts, "hang", data, f"{name}: hang ({spent:.1f}s)")
        elif outcome == "CRASH":
            report.fail(args.artifacts, "crash", data, f"{name}: crash", "\n" + "".join(traceback.format_exception(exc)).rstrip())
        if _peak_rss_mb() > args.rss_limit_mb:
            report.fail(args.artifacts, "oom", data, f"{name}: peak RSS {_peak_rss_mb():.0f} MB")
        report.outcomes.setdefault(name, Counter())[outcome] += 1
    if args.progress and report.inputs % args.progress == 0:
        print(report.summary(args).splitlines()[0], file=sys.stderr, flush=True)


def _alarm(_signum: int, _frame: object) -> None:
    raise Hang()


def fuzz_random(args: argparse.Namespace, targets: Targets) -> Report:
    """The corpus once, then seeded mutations of it, until ``--runs`` inputs or ``--seconds``."""
    corpus = [p.read_bytes() for folder in args.corpus if folder.is_dir() for p in sorted(folder.iterdir()) if p.is_file()]
    corpus = corpus or [b""]
    rnd, report = random.Random(args.seed), Report()
    deadline = time.monotonic() + args.seconds if args.seconds else float("inf")
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        while not (args.runs and report.inputs >= args.runs) and time.monotonic() < deadline and not report.failures["oom"]:
            data = corpus[report.inputs] if report.inputs < len(corpus) else mutate(rnd.choice(corpus), corpus, rnd)
            signal.setitimer(signal.ITIMER_REAL, args.timeout * 2)
            try:
                run_input(targets.chosen(args.target), data, report, args)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    finally:  # stopped at the first input over memory: the peak RSS only grows, later inputs cannot be judged
        signal.signal(signal.SIGALRM, previous)
    return report


def fuzz_atheris(args: argparse.Namespace, libfuzzer_args: list[str]) -> None:
    """Coverage-guided fuzzing; prints the summary and exits after ``--runs`` inputs (never returns)."""
    import gc
    import types

    import atheris

    for obj in gc.get_objects():  # vqcodec is imported already (this module is part of it): instrument in place
        if type(obj) is types.FunctionType and (obj.__module__ or "").startswith("vqcodec.") \
                and not obj.__module__.startswith("vqcodec.testing"):
            atheris.instrument_func(obj)
    chosen, report = Targets().chosen(args.target), Report()
    work = args.artifacts / "corpus"  # libFuzzer adds new inputs to the first folder; the seeds stay untouched
    work.mkdir(parents=True, exist_ok=True)

    def one_input(data: bytes) -> None:
        run_input(chosen, data, report, args)
        if report.inputs >= args.runs or report.failures["oom"]:
            print(report.summary(args), flush=True)
            os._exit(1 if report.failures else 0)  # libFuzzer never returns

    atheris.Setup([sys.argv[0], f"-timeout={max(1, int(args.timeout * 4))}", f"-rss_limit_mb={int(args.rss_limit_mb)}",
                   f"-artifact_prefix={args.artifacts}/", "-max_len=4096", *libfuzzer_args, str(work), *map(str, args.corpus)],
                  one_input)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    """The command line (``--help``); returns 1 when any input failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["random", "atheris"], default="random")
    parser.add_argument("--target", choices=["container", "codec", "entropy", "context", "all"], default="all")
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
    torch.set_num_threads(1)
    if args.make_corpus:
        args.make_corpus.mkdir(parents=True, exist_ok=True)
        for name, data in seed_corpus(tiny_codec()).items():
            (args.make_corpus / name).write_bytes(data)
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
    report = fuzz_random(args, Targets())
    print(report.summary(args), flush=True)
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
