"""Range coding (constriction's FIFO range coder) of integer symbols under a static prior.

The compressed stream is constriction's ``uint32`` words, little-endian, with trailing zero
bytes dropped (the decoder pads them back), so it costs at most a few bytes over the ideal.
"""

from __future__ import annotations

import constriction
import numpy as np

from ..errors import BitstreamError
from .prior import StaticPrior


def _model(prior: StaticPrior) -> constriction.stream.model.Categorical:
    # frequencies / 2**20 are exact float64s; constriction maps them to its 24-bit table the same
    # way on every machine for a given release, which setup.py pins and tests/test_golden.py checks.
    return constriction.stream.model.Categorical(prior.probabilities(), perfect=False)


def finish(encoder: constriction.stream.queue.RangeEncoder) -> bytes:
    """An encoder's words as payload bytes: little-endian, trailing zero bytes dropped."""
    return encoder.get_compressed().astype("<u4").tobytes().rstrip(b"\0")


def decoder_for(data: bytes) -> constriction.stream.queue.RangeDecoder:
    """A decoder over payload bytes (zero bytes padded back to whole words)."""
    padded = data + b"\0" * (-len(data) % 4)
    return constriction.stream.queue.RangeDecoder(np.frombuffer(padded, dtype="<u4").astype(np.uint32))


class AdaptiveFlags:
    """Adaptive binary models: per context, integer counts that start at 1 and grow by 2 per
    flag seen (the Krichevsky–Trofimov estimator, in integers so every machine agrees)."""

    def __init__(self, contexts: int) -> None:
        self.counts = np.ones((contexts, 2), dtype=np.int64)

    def model(self, context: int) -> constriction.stream.model.Categorical:
        counts = self.counts[context]
        return constriction.stream.model.Categorical(counts / counts.sum(), perfect=False)

    def update(self, context: int, flag: int) -> None:
        self.counts[context, flag] += 2


class FlagWriter:
    """Codes binary flags under :class:`AdaptiveFlags`: ``writer(flags, context, flag)`` codes
    ``flag`` and returns it, so one walk over a structure serves encoder and decoder alike."""

    def __init__(self) -> None:
        self.encoder = constriction.stream.queue.RangeEncoder()

    def __call__(self, flags: AdaptiveFlags, context: int, flag: int) -> int:
        flag = int(flag)
        self.encoder.encode(flag, flags.model(context))
        flags.update(context, flag)
        return flag

    def finish(self) -> bytes:
        return finish(self.encoder) or b"\0"  # never empty: an empty record would mean "absent"


class FlagReader:
    """The decoding twin of :class:`FlagWriter`: returns the flag it reads and ignores the one given."""

    def __init__(self, data: bytes) -> None:
        self.decoder = decoder_for(data)

    def __call__(self, flags: AdaptiveFlags, context: int, _: int = 0) -> int:
        flag = int(self.decoder.decode(flags.model(context)))
        flags.update(context, flag)
        return flag


def encode_symbols(symbols: np.ndarray, prior: StaticPrior) -> bytes:
    """Symbols (any shape, values in ``[0, prior.size)``) → bytes."""
    flat = np.ascontiguousarray(np.asarray(symbols).reshape(-1), dtype=np.int32)
    if flat.size and (flat.min() < 0 or flat.max() >= prior.size):
        raise ValueError(f"symbols must lie in [0, {prior.size})")
    if prior.size == 1:  # a one-symbol alphabet carries no information
        return b""
    encoder = constriction.stream.queue.RangeEncoder()
    if flat.size:
        encoder.encode(flat, _model(prior))
    return finish(encoder)


def decode_symbols(data: bytes, count: int, prior: StaticPrior) -> np.ndarray:
    """Bytes → ``int64[count]``. Raises :class:`BitstreamError` if the stream cannot be decoded."""
    if count == 0 or prior.size == 1:
        return np.zeros(count, dtype=np.int64)
    try:
        out = decoder_for(data).decode(_model(prior), count)
    except Exception as exc:  # constriction reports bad data with assorted built-in exceptions
        raise BitstreamError(f"entropy-coded payload is invalid: {exc}") from None
    return np.asarray(out, dtype=np.int64)
