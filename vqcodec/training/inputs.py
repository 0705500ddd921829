"""What a decoder reads once deployed: index grids at a codebook level, with coarse tokens.

A decoder fine-tuned on the full codebook's grids never sees what files carry: a level's smaller
codebook, and with adaptive granularity the same code repeated over 2×2 or 4×4 positions where
the encoder judged the image smooth. :func:`deployed_codes` draws such inputs for a batch: a
random level, and a granularity map chosen as the encoder chooses it (error + λ × tokens, with the
latent's error standing in for the decode's and a random λ per image), so coarse tokens land where
the content allows them.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch

from ..codec import granularity
from ..models import VQGAN

LAMBDA_RANGE = (0.01, 0.5)  # latent squared error per token: from almost all f16 to almost all f64
FINE_ONLY = 0.2  # share of images kept on the plain f16 grid


def sample_map(errors: dict[int, np.ndarray], rng: random.Random) -> np.ndarray:
    """A granularity map for one image from its per-position latent errors at each granularity."""
    if rng.random() < FINE_ONLY:
        return np.zeros(granularity.block_shape(*errors[1].shape), dtype=np.uint8)
    lam = math.exp(rng.uniform(*map(math.log, LAMBDA_RANGE)))
    ones = np.ones_like(errors[1])
    return granularity.choose(errors, dict.fromkeys(granularity.GRANULARITIES, ones), lam)


@torch.no_grad()
def deployed_codes(model: VQGAN, x: torch.Tensor, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """``(codes [B,D,h,w], indices [B,h,w])`` for images ``x`` as a file would carry them: one
    random level of ``model`` for the batch and a sampled granularity map per image."""
    level = rng.choice(model.levels)
    codebook = model.codebook(level)
    z = model.level_model(level).encode_latent(x)
    grids = granularity.quantize(z, codebook)  # [B,3,h,w]
    out = []
    for zb, gb in zip(z, grids):
        errors = {
            g: ((zb - codebook[gb[i]].permute(2, 0, 1)) ** 2).sum(0).cpu().numpy()
            for i, g in enumerate(granularity.GRANULARITIES)
        }
        gmap = sample_map(errors, rng)
        out.append(granularity.mixed(dict(zip(granularity.GRANULARITIES, gb.cpu().numpy())), gmap))
    indices = torch.from_numpy(np.stack(out)).to(x.device)
    return codebook[indices].permute(0, 3, 1, 2).contiguous(), indices
