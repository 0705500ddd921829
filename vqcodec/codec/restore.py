"""Filling lost indices of a grid: the transformer restorer and two simple baselines.

Every method takes ``indices [h,w]`` (values at lost positions are ignored) and ``known [h,w]``
(bool) and returns a full grid whose known positions are unchanged.
"""

from __future__ import annotations

import math

import torch

from ..errors import VQCodecError
from ..models.restorer import IndexRestorer
from .tiling import grow, tiles

METHODS = ("transformer", "neighbour", "fixed")
# One pass beat 4 MaskGIT steps on held-out training photos (vqcodec/assets/README.md), and is 4x faster.
DEFAULT_STEPS = 1
# Attention costs the square of the grid, so larger grids are restored in windows: cores of
# WINDOW × WINDOW indices, each seeing HALO indices around it (the restorer trains on 16 × 16 crops).
WHOLE_INDICES = 48 * 48
WINDOW = 32
HALO = 8


def restore_fixed(indices: torch.Tensor, known: torch.Tensor, code: int) -> torch.Tensor:
    """Baseline (a): every lost index becomes one fixed code (the level's most probable one)."""
    return torch.where(known, indices, torch.full_like(indices, code))


def restore_neighbour(indices: torch.Tensor, known: torch.Tensor, fallback: int) -> torch.Tensor:
    """Baseline (b): every lost index copies the code of its nearest surviving neighbour
    (Euclidean distance on the grid, scipy's exact distance transform); ``fallback`` if none survive."""
    from scipy.ndimage import distance_transform_edt

    have = known.numpy()
    if not have.any():
        return torch.full_like(indices, fallback)
    _, (rows, cols) = distance_transform_edt(~have, return_distances=True, return_indices=True)
    return torch.from_numpy(indices.numpy()[rows, cols])


@torch.inference_mode()
def restore_transformer(
    model: IndexRestorer, indices: torch.Tensor, known: torch.Tensor, codebook: torch.Tensor, steps: int = DEFAULT_STEPS,
    whole: int = WHOLE_INDICES, window: int = WINDOW, halo: int = HALO,
) -> torch.Tensor:
    """MaskGIT-style filling: each step predicts every lost index and keeps the most confident
    ones (cosine schedule); the last step fills the rest. Greedy, so the result is deterministic.
    One step (the default) fills every lost position at once.

    Grids of more than ``whole`` indices are filled a window at a time, in row-major order, so time
    and memory grow linearly with the grid: each window's core is filled from the core and its
    halo, which already holds the fills of the windows before it."""
    h, w = indices.shape
    if h * w <= whole:
        return _fill(model, indices, known, codebook, steps)
    out, have = indices.clone(), known.clone()
    for rows, cols in tiles(h, w, window):
        if have[rows[0] : rows[1], cols[0] : cols[1]].all():
            continue
        (y0, y1), (x0, x1) = grow(rows, halo, h), grow(cols, halo, w)
        filled = _fill(model, out[y0:y1, x0:x1], have[y0:y1, x0:x1], codebook, steps)
        out[rows[0] : rows[1], cols[0] : cols[1]] = filled[rows[0] - y0 : rows[1] - y0, cols[0] - x0 : cols[1] - x0]
        have[rows[0] : rows[1], cols[0] : cols[1]] = True
    return out


def _fill(model: IndexRestorer, indices: torch.Tensor, known: torch.Tensor, codebook: torch.Tensor, steps: int) -> torch.Tensor:
    device = codebook.device
    idx = indices.to(device).clone()[None]
    have = known.to(device).clone()[None]
    lost = int((~have).sum())
    for step in range(steps):
        if not (~have).any():
            break
        logits = model(idx.clamp(0, codebook.shape[0] - 1), have, codebook)
        confidence, prediction = logits.float().softmax(-1).max(-1)
        confidence = confidence.masked_fill(have, -1.0)
        remaining = math.floor(lost * math.cos(math.pi / 2 * (step + 1) / steps)) if step < steps - 1 else 0
        take = int((~have).sum()) - remaining
        chosen = confidence.flatten().topk(take).indices
        idx.view(-1)[chosen] = prediction.view(-1)[chosen]
        have.view(-1)[chosen] = True
    return idx[0].cpu()


class RestorationPolicy:
    """Chooses how lost indices are filled ("auto": the transformer when loaded, else the
    neighbour baseline) and fills them."""

    def __init__(self, restorer: IndexRestorer | None = None) -> None:
        self.restorer = restorer

    def method(self, requested: str = "auto") -> str:
        """The method ``requested`` names."""
        if requested == "auto":
            return "transformer" if self.restorer is not None else "neighbour"
        if requested not in METHODS:
            raise VQCodecError(f"unknown restoration method {requested!r}; choose from auto, {', '.join(METHODS)}")
        if requested == "transformer" and self.restorer is None:
            raise VQCodecError("no restorer model is loaded for this model (restore with 'neighbour', or train one)")
        return requested

    def fill(
        self, indices: torch.Tensor, known: torch.Tensor, codebook: torch.Tensor, most_probable: int,
        method: str = "auto", steps: int = DEFAULT_STEPS,
    ) -> torch.Tensor:
        """Fill the unknown positions of a grid ``[h,w]`` of ``codebook``'s indices; known ones stay."""
        method = self.method(method)
        if method == "fixed":
            return restore_fixed(indices, known, most_probable)
        if method == "neighbour":
            return restore_neighbour(indices, known, most_probable)
        return restore_transformer(self.restorer, indices, known, codebook, steps)
