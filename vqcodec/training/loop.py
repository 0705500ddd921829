"""What every training loop here shares: ``<out>/last.pt`` to resume from and checkpoint to,
a window of averaged losses to log, and a wall-clock budget (``max_minutes``) to stop within.

The model, optimizer and what goes into a checkpoint stay with each loop; this only keeps the
bookkeeping the same for all of them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..fileio import atomic_save

log = logging.getLogger(__name__)


class TrainingRun:
    """One run's folder, checkpoint, log window and time budget.

    ``main`` is False on every process but the first of a distributed run: those never write
    checkpoints nor report the budget (they still keep the log window, so all ranks agree).
    """

    def __init__(self, out: str | Path, max_minutes: float | None = None, main: bool = True) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / "last.pt"
        self.max_minutes = max_minutes
        self.main = main
        self.start(0)

    def load(self) -> dict[str, Any] | None:
        """The last checkpoint (tensors only, on the CPU), or None for a new run."""
        if not self.path.exists():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=True)

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` to ``last.pt`` atomically, so a run killed mid-save still resumes."""
        if self.main:
            atomic_save(self.path, lambda f: torch.save(state, f), force=True)

    def start(self, step: int) -> None:
        """Start the clock (and the step rate) at ``step``: set-up time is not part of the budget."""
        self.started = time.time()
        self.first_step = step
        self._sums: dict[str, float] = {}
        self._count = 0

    def add(self, logs: dict[str, float]) -> None:
        """Add one step's losses to the log window."""
        self._count += 1
        for k, v in logs.items():
            self._sums[k] = self._sums.get(k, 0.0) + v

    def means(self) -> dict[str, float]:
        """The window's mean losses; starts a new window."""
        means = {k: v / max(1, self._count) for k, v in self._sums.items()}
        self._sums, self._count = {}, 0
        return means

    def seconds_per_step(self, step: int) -> float:
        return (time.time() - self.started) / max(1, step - self.first_step)

    def should_stop(self, step: int, agree: Callable[[bool], bool] | None = None) -> bool:
        """True once ``max_minutes`` have passed since :meth:`start`. Under DDP, ``agree`` turns the
        local verdict into a common one, so every rank stops at the same step."""
        if self.max_minutes is None:
            return False
        stop = time.time() - self.started > self.max_minutes * 60
        if agree is not None:
            stop = agree(stop)
        if stop and self.main:
            log.info("time budget of %.1f min reached at step %d", self.max_minutes, step)
        return stop


def warmup_cosine(step: int, warmup: int, steps: int) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to 5 % at
    ``steps`` (set it to the planned length)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))
