"""Building codebook levels: K-means of the full codebook, per-level fine-tuning, static priors."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from ..entropy import StaticPrior
from ..metrics import psnr
from ..models import VQGAN
from .losses import VQLoss


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


def finetune_level(
    model: VQGAN,
    level: int,
    batches: Iterator[torch.Tensor],
    steps: int,
    criterion: VQLoss,
    lr: float = 1e-3,
    tune_decoder: bool = False,
    lr_decoder: float = 5e-5,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Fine-tune one level as in Mao et al.: encoder frozen; the level's codebook (from its K-means
    centroids) and the 1×1 quant convolutions trained with the VQGAN loss — and the decoder too
    when ``tune_decoder``. Returns ``(codebook, overrides)`` for :meth:`VQGAN.add_level`."""
    level_model = model.for_level(level)
    level_model.requires_grad_(False)
    tuned = ["quant_conv.", "post_quant_conv."]
    groups = [{"params": [level_model.quantize.embedding.weight, *level_model.quant_conv.parameters(),
                          *level_model.post_quant_conv.parameters()], "lr": lr}]
    if tune_decoder:
        tuned.append("decoder.")
        groups.append({"params": list(level_model.decoder.parameters()), "lr": lr_decoder})
    for group in groups:
        for p in group["params"]:
            p.requires_grad_(True)
    opt = torch.optim.Adam(groups, betas=(0.5, 0.9))
    level_model.train()
    for _ in range(steps):
        x = next(batches)
        xrec, qloss, _ = level_model(x)
        loss, _ = criterion.generator_loss(x, xrec, qloss, 0, level_model.last_layer())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    level_model.eval()
    overrides = {k: v.detach().clone() for k, v in level_model.state_dict().items() if k.startswith(tuple(tuned))}
    return level_model.quantize.embedding.weight.detach().clone(), overrides


def keep_finetuned(kept: dict[str, float], finetuned: dict[str, float]) -> bool:
    """Whether a fine-tuned level replaces the one kept so far (at first its K-means centroids).

    Both are :func:`level_quality` results on held-out photos. The fine-tuned variant wins only if
    it is strictly better in both PSNR (higher) and LPIPS-Squeeze (lower): fine-tuning that buys
    sharpness with fidelity, or the reverse, is not worth a second set of level parameters.
    """
    return finetuned["psnr"] > kept["psnr"] and finetuned["lpips_sq"] < kept["lpips_sq"]


@torch.inference_mode()
def level_quality(model: VQGAN, level: int, images: list[torch.Tensor], perceptual: torch.nn.Module) -> dict[str, float]:
    """Mean PSNR and LPIPS-Squeeze of the level's reconstructions of ``images`` (held-out photos)."""
    psnrs, lps = [], []
    for x in images:
        xrec = model.decode_indices(model.encode_indices(x, level), level)
        psnrs.append(float(psnr(xrec, x).mean()))
        lps.append(float(perceptual(xrec, x).mean()))
    return {"psnr": float(np.mean(psnrs)), "lpips_sq": float(np.mean(lps))}
