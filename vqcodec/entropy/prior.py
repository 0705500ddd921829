"""Static priors: integer symbol frequencies, identical on every machine.

A prior is a vector of positive integers summing to ``2**PRECISION_BITS``. Only these integers
are stored and used, so encoder and decoder always agree bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRECISION_BITS = 20
TOTAL = 1 << PRECISION_BITS


@dataclass(frozen=True)
class StaticPrior:
    """Frequencies ``int64[S]``, all ≥ 1, summing to ``2**PRECISION_BITS``."""

    frequencies: np.ndarray

    def __post_init__(self) -> None:
        f = self.frequencies
        if f.ndim != 1 or len(f) < 1 or int(f.min()) < 1 or int(f.sum()) != TOTAL:
            raise ValueError(f"a prior needs ≥1 positive integer frequencies summing to 2**{PRECISION_BITS}")
        if len(f) > TOTAL:
            raise ValueError("alphabet larger than the prior's precision")

    @property
    def size(self) -> int:
        return len(self.frequencies)

    @classmethod
    def uniform(cls, size: int) -> StaticPrior:
        return cls.from_counts(np.ones(size), floor=0.0)

    @classmethod
    def from_counts(cls, counts: np.ndarray, floor: float = 1e-6) -> StaticPrior:
        """Quantize measured counts; every symbol keeps probability ≥ ``floor`` (and ≥ 1/TOTAL)."""
        counts = np.asarray(counts, dtype=np.float64)
        if counts.ndim != 1 or counts.size == 0 or (counts < 0).any() or counts.sum() <= 0:
            raise ValueError("counts must be a non-empty, non-negative vector with a positive sum")
        size = counts.size
        probs = counts / counts.sum()
        probs = np.maximum(probs, floor)
        probs /= probs.sum()
        spare = TOTAL - size  # every symbol gets 1 unconditionally
        freq = 1 + np.floor(probs * spare).astype(np.int64)
        remainder = TOTAL - int(freq.sum())
        # hand the rounding remainder to the symbols that lost most to flooring, lowest index first
        loss = probs * spare - np.floor(probs * spare)
        order = np.lexsort((np.arange(size), -loss))
        freq[order[:remainder]] += 1
        return cls(freq)

    def probabilities(self) -> np.ndarray:
        """Exact ``float64`` probabilities (the frequencies over a power of two)."""
        return self.frequencies.astype(np.float64) / TOTAL

    def cross_entropy_bits(self, symbols: np.ndarray) -> float:
        """Ideal code length of ``symbols`` under this prior, in bits."""
        p = self.probabilities()[np.asarray(symbols, dtype=np.int64)]
        return float(-np.log2(p).sum())
