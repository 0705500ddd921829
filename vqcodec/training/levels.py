"""Building codebook levels (K-means of the full codebook) and measuring their static priors."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from ..entropy import StaticPrior
from ..models import VQGAN


def kmeans_codebook(codebook: torch.Tensor, size: int, usage: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """Cluster the codewords ``[N,D]`` into ``size`` centroids, each code weighted by its usage.

    Unused codes get a small weight, not zero, so every region of the codebook keeps a centroid.
    """
    from sklearn.cluster import KMeans

    data = codebook.detach().float().cpu().numpy().astype(np.float64)
    weights = None
    if usage is not None:
        u = usage.detach().float().cpu().numpy().astype(np.float64)
        weights = u + max(1e-3 * u.mean(), 1e-9)
    if size >= len(data):
        raise ValueError(f"level size {size} must be smaller than the codebook ({len(data)})")
    km = KMeans(n_clusters=size, n_init=3, max_iter=300, random_state=seed).fit(data, sample_weight=weights)
    return torch.from_numpy(km.cluster_centers_).float()


@torch.inference_mode()
def index_counts(model: VQGAN, batches: Iterable[torch.Tensor], levels: list[int]) -> dict[int, torch.Tensor]:
    """Histogram of the indices each level produces on ``batches`` of images in [0,1]."""
    counts = {level: torch.zeros(level, dtype=torch.long) for level in levels}
    for x in batches:
        z = model.encode_latent(x)
        for level in levels:
            lz = model.level_model(level).encode_latent(x) if model.level_overrides.get(level) else z
            idx = model.nearest_code(lz, model.codebook(level))
            counts[level] += torch.bincount(idx.flatten().cpu(), minlength=level)
    return counts


def priors_from_counts(counts: dict[int, torch.Tensor], floor: float = 1e-6) -> dict[int, torch.Tensor]:
    """Counts → stored integer frequencies (see :class:`StaticPrior`)."""
    return {
        level: torch.from_numpy(StaticPrior.from_counts(c.numpy(), floor=floor).frequencies.astype(np.int32))
        for level, c in counts.items()
    }
