"""The entropy models a file can name, by the id stored in its header.

The container stores one byte, the entropy-model id; this module is the one place that says what
each id means. Ids are never reused: a file names its entropy model forever.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BitstreamError
from .coder import decode_symbols, encode_symbols
from .prior import StaticPrior

UNIFORM = 0  #: every code of the level equally likely
STATIC_PRIOR = 1  #: the level's measured code frequencies

NAMES: dict[int, str] = {UNIFORM: "uniform", STATIC_PRIOR: "static prior"}


@dataclass(frozen=True)
class EntropyModel:
    """A registered id and the distribution it codes symbols with."""

    id: int
    prior: StaticPrior

    def encode(self, symbols: np.ndarray) -> bytes:
        return encode_symbols(symbols, self.prior)

    def decode(self, data: bytes, count: int) -> np.ndarray:
        """``count`` symbols as ``int64``; :class:`BitstreamError` if ``data`` cannot be decoded."""
        return decode_symbols(data, count, self.prior)

    @property
    def most_probable(self) -> int:
        return int(np.argmax(self.prior.frequencies))


class LevelEntropy:
    """The entropy model of each level: its measured prior, or uniform when it has none."""

    def __init__(self, priors: dict[int, StaticPrior]) -> None:
        self.priors = dict(priors)

    def for_level(self, level: int) -> EntropyModel:
        """The model an encoder uses for ``level``."""
        if level in self.priors:
            return EntropyModel(STATIC_PRIOR, self.priors[level])
        return EntropyModel(UNIFORM, StaticPrior.uniform(level))

    def for_file(self, entropy_id: int, level: int) -> EntropyModel:
        """The model a file names; refuses an id this model cannot have written for the level."""
        model = self.for_level(level)
        if entropy_id != model.id:
            name = NAMES.get(entropy_id, "unknown")
            raise BitstreamError(f"entropy model id {entropy_id} ({name}) does not match level {level} of this model")
        return model
