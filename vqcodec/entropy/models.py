"""The entropy models a file can name, by the id stored in its header.

The container stores one byte, the entropy-model id; this module is the one place that says what
each id means. Ids are never reused: a file names its entropy model forever.

Every model codes a grid as independent *parts* (the whole grid of a plain file, one packet each
in a packetized one): a part's payload decodes without any other part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BitstreamError, ModelMismatchError, VQCodecError
from .coder import decode_symbols, encode_symbols
from .context import ContextCoder, ContextTables, coded_positions, spread
from .prior import StaticPrior

UNIFORM = 0  #: every code of the level equally likely
STATIC_PRIOR = 1  #: the level's measured code frequencies
CONTEXT = 2  #: the integer context model the header names by fingerprint (vqcodec.entropy.context)

NAMES: dict[int, str] = {UNIFORM: "uniform", STATIC_PRIOR: "static prior", CONTEXT: "context model"}
CHOICES = ("auto", "static", "context")  #: what an encoder may ask for (see LevelEntropy.for_level)


@dataclass(frozen=True)
class EntropyModel:
    """A registered id and how it codes the parts of a grid."""

    id: int
    prior: StaticPrior  # the level's static prior; also names the most probable code
    context: ContextCoder | None = None

    @property
    def fingerprint(self) -> bytes:
        """The context tables' fingerprint a header must carry (empty for the static models)."""
        return self.context.tables.fingerprint if self.context is not None else b""

    def encode(
        self, grid: np.ndarray, parts: np.ndarray | None = None, count: int = 1, anchor: np.ndarray | None = None
    ) -> list[bytes]:
        """One payload per part; ``parts [h,w]`` numbers each position's part (default: one part).
        ``anchor [h,w]`` (a mixed-granularity grid, :mod:`vqcodec.codec.granularity`): only the
        positions that are their own anchor are coded, and a copy must share its anchor's part."""
        grid = np.asarray(grid, dtype=np.int64)
        parts = np.zeros(grid.shape, dtype=np.int64) if parts is None else parts
        if grid.size and (grid.min() < 0 or grid.max() >= self.prior.size):
            raise ValueError(f"symbols must lie in [0, {self.prior.size})")
        if self.context is not None:
            return self.context.encode(grid, parts, count, anchor)
        coded = coded_positions(anchor, grid.shape)
        return [encode_symbols(grid[(parts == k) & coded], self.prior) for k in range(count)]

    def decode(
        self, payloads: list[bytes | None], parts: np.ndarray, anchor: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[bool]]:
        """``(grid int64 [h,w], decoded?)`` per part; a missing (None) or undecodable part's
        positions are 0. ``anchor``: as in :meth:`encode`; copies take their anchor's index."""
        if self.context is not None:
            return self.context.decode(payloads, parts, anchor)
        coded = coded_positions(anchor, parts.shape)
        grid = np.zeros(parts.shape, dtype=np.int64)
        ok = []
        for k, data in enumerate(payloads):
            where = (parts == k) & coded
            try:
                if data is not None:
                    grid[where] = decode_symbols(data, int(where.sum()), self.prior)
            except BitstreamError:
                data = None
            ok.append(data is not None)
        return (grid if anchor is None else spread(grid, anchor)), ok

    @property
    def most_probable(self) -> int:
        return int(np.argmax(self.prior.frequencies))


class LevelEntropy:
    """The entropy models of every level: the measured prior (uniform without one) and, when a
    context model is loaded, the context model."""

    def __init__(self, priors: dict[int, StaticPrior], context: ContextTables | None = None) -> None:
        self.priors = dict(priors)
        self.context = context

    def _static(self, level: int) -> EntropyModel:
        if level in self.priors:
            return EntropyModel(STATIC_PRIOR, self.priors[level])
        return EntropyModel(UNIFORM, StaticPrior.uniform(level))

    def has_context(self, level: int) -> bool:
        return self.context is not None and level in self.context.levels

    def for_level(self, level: int, kind: str = "auto", packetized: bool = False) -> EntropyModel:
        """The model an encoder uses for ``level``: ``kind`` is one of :data:`CHOICES`. "auto" is the
        context model for a plain file when one is loaded, and the static prior for a packetized
        file: each packet sees only its own, scattered positions, so the context model saved under
        1 % there (docs/evaluation.md) while costing one pass per packet."""
        if kind not in CHOICES:
            raise VQCodecError(f"unknown entropy model {kind!r}; choose from {', '.join(CHOICES)}")
        if kind == "static" or (kind == "auto" and (packetized or not self.has_context(level))):
            return self._static(level)
        if not self.has_context(level):
            raise VQCodecError(f"no context model is loaded for level {level} (use the static prior, or train one)")
        return EntropyModel(CONTEXT, self._static(level).prior, ContextCoder(self.context, level))

    def for_file(self, entropy_id: int, level: int, fingerprint: bytes = b"") -> EntropyModel:
        """The model a file names; refuses an id (or context model) this codec cannot decode it with."""
        if entropy_id == CONTEXT:
            if not self.has_context(level):
                raise ModelMismatchError(
                    f"file was coded with context model {fingerprint.hex()}; none is loaded for level {level}"
                )
            if fingerprint != self.context.fingerprint:
                raise ModelMismatchError(
                    f"file was coded with context model {fingerprint.hex()}; loaded is {self.context.fingerprint.hex()}"
                )
            return self.for_level(level, "context")
        model = self._static(level)
        if entropy_id != model.id:
            name = NAMES.get(entropy_id, "unknown")
            raise BitstreamError(f"entropy model id {entropy_id} ({name}) does not match level {level} of this model")
        return model
