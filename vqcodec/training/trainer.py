"""A resumable VQGAN training loop for CPU (and GPU when present).

Losses: L1 + LPIPS-Squeeze + codebook/commitment. The codebook starts from K-means of encoder
outputs and unused codes are restarted from recent encoder outputs, so every code stays alive.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..metrics import lpips_squeeze
from ..models import VQGAN, ModelConfig
from .data import RandomCrops

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    data: str
    out: str
    steps: int = 2000
    batch_size: int = 8
    crop: int = 128
    lr: float = 5e-4
    lr_pretrained: float = 1e-4
    l1_weight: float = 1.0
    perceptual_weight: float = 1.0
    restart_every: int = 50
    checkpoint_every: int = 100
    sample_every: int = 250
    kmeans_samples: int = 40000
    latent_warmup_steps: int = 0
    taef2_dir: str | None = None
    lpips_backbone: str | None = None
    seed: int = 0
    max_minutes: float | None = None


def load_taef2(model: VQGAN, folder: str | Path) -> None:
    """Initialise the f8 halves of a ``taef2`` model from the pretrained TAEF2 state dicts."""
    folder = Path(folder)
    enc = torch.load(folder / "taef2_encoder.pth", map_location="cpu", weights_only=True)
    dec = torch.load(folder / "taef2_decoder.pth", map_location="cpu", weights_only=True)
    model.encoder.f8.load_state_dict(enc, strict=True)
    model.decoder.f8.load_state_dict(dec, strict=True)


def _endless(loader: DataLoader):
    while True:
        yield from loader


@torch.no_grad()
def kmeans_init(model: VQGAN, batches, n_samples: int, seed: int) -> None:
    """Set the codebook to K-means centroids of encoder outputs (scikit-learn)."""
    from sklearn.cluster import KMeans

    vecs = []
    total = 0
    while total < n_samples:
        z = model.encode_latent(next(batches))
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        vecs.append(flat)
        total += flat.shape[0]
    data = torch.cat(vecs)[:n_samples].numpy()
    k = model.config.n_embed
    km = KMeans(n_clusters=k, n_init=1, max_iter=30, random_state=seed).fit(data)
    centers = torch.from_numpy(km.cluster_centers_).float()
    if model.config.l2_normalize:
        centers = torch.nn.functional.normalize(centers, dim=1)
    model.quantize.embedding.weight.data.copy_(centers)


def latent_warmup(model: VQGAN, batches, steps: int, lr: float) -> None:
    """Fit the new f8→f16→f8 stages to reproduce TAEF2's f8 latent (MSE, no quantization).

    Cheap (the pixel decoder is not run) and gives the pretrained decoder sensible inputs, so the
    pixel-space training that follows starts from a working autoencoder instead of noise.
    """
    stages = [model.encoder.to_f16, model.quant_conv, model.post_quant_conv, model.decoder.from_f16]
    params = [p for m in stages for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    for step in range(1, steps + 1):
        with torch.no_grad():
            target = model.encoder.f8(next(batches))
        z = model.quant_conv(model.encoder.to_f16(target))
        if model.config.l2_normalize:
            z = torch.nn.functional.normalize(z, dim=1)
        loss = torch.nn.functional.mse_loss(model.decoder.from_f16(model.post_quant_conv(z)), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps:
            log.info("latent warm-up %d/%d  mse %.4f (latent variance %.4f)", step, steps, loss.item(), target.var().item())


def train(cfg: TrainConfig, model_cfg: ModelConfig) -> Path:
    """Train (or resume) and return the checkpoint path. Checkpoints: ``<out>/last.pt``."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "last.pt"
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)

    model = VQGAN(model_cfg)
    pretrained = list(model.encoder.f8.parameters()) + list(model.decoder.f8.parameters()) if model_cfg.backbone == "taef2" else []
    pretrained_ids = {id(p) for p in pretrained}
    others = [p for p in model.parameters() if id(p) not in pretrained_ids]
    groups = [{"params": others, "lr": cfg.lr}]
    if pretrained:
        groups.append({"params": pretrained, "lr": cfg.lr_pretrained})
    opt = torch.optim.Adam(groups, betas=(0.5, 0.9))

    data = RandomCrops(cfg.data, cfg.crop, seed=cfg.seed)
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True, drop_last=True, num_workers=0)
    batches = _endless(loader)
    usage = torch.zeros(model_cfg.n_embed, dtype=torch.long)

    step = 0
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step = int(ckpt["step"])
        usage = ckpt["usage"]
        torch.set_rng_state(ckpt["torch_rng"])
        data.rng.seed(cfg.seed + step)
        log.info("resumed from %s at step %d", ckpt_path, step)
    else:
        if model_cfg.backbone == "taef2" and cfg.taef2_dir:
            load_taef2(model, cfg.taef2_dir)
            log.info("initialised f8 encoder/decoder from TAEF2 (%s)", cfg.taef2_dir)
            if cfg.latent_warmup_steps:
                latent_warmup(model, batches, cfg.latent_warmup_steps, cfg.lr)
        log.info("K-means codebook init from %d encoder outputs", cfg.kmeans_samples)
        kmeans_init(model, batches, cfg.kmeans_samples, cfg.seed)

    model.to(device).train()
    perceptual = lpips_squeeze(cfg.lpips_backbone).to(device)

    def save() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "step": step,
                "usage": usage,
                "torch_rng": torch.get_rng_state(),
                "model_config": model_cfg.to_json(),
                "train_config": asdict(cfg),
            },
            tmp,
        )
        tmp.replace(ckpt_path)

    started = time.time()
    window: dict[str, float] = {}
    while step < cfg.steps:
        x = next(batches).to(device)
        xrec, qloss, idx = model(x)
        l1 = (xrec - x).abs().mean()
        lp = perceptual(xrec, x).mean()
        loss = cfg.l1_weight * l1 + cfg.perceptual_weight * lp + qloss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        usage += torch.bincount(idx.flatten().cpu(), minlength=model_cfg.n_embed)
        for k, v in (("loss", loss), ("l1", l1), ("lpips_sq", lp), ("q", qloss)):
            window[k] = window.get(k, 0.0) + float(v.detach())

        if step % cfg.restart_every == 0:
            dead = (usage == 0).nonzero().flatten()
            probs = usage.float() / usage.sum()
            perplexity = float(torch.exp(-(probs[probs > 0] * probs[probs > 0].log()).sum()))
            if len(dead):
                with torch.no_grad():
                    z = model.encode_latent(x).permute(0, 2, 3, 1).reshape(-1, model_cfg.embed_dim)
                    pick = torch.randint(0, z.shape[0], (len(dead),), device=z.device)
                    model.quantize.embedding.weight.data[dead.to(device)] = z[pick] + 0.01 * torch.randn_like(z[pick])
            n = cfg.restart_every
            log.info(
                "step %d  loss %.4f  l1 %.4f  lpips_sq %.4f  q %.4f  used %d/%d  perplexity %.0f  restarted %d  %.2fs/step",
                step, window["loss"] / n, window["l1"] / n, window["lpips_sq"] / n, window["q"] / n,
                int((usage > 0).sum()), model_cfg.n_embed, perplexity, len(dead), (time.time() - started) / max(1, step),
            )
            window = {}
            usage.zero_()
        if step % cfg.checkpoint_every == 0:
            save()
        if step % cfg.sample_every == 0:
            _save_samples(out / f"sample_{step:06d}.png", x, xrec)
        if cfg.max_minutes is not None and time.time() - started > cfg.max_minutes * 60:
            log.info("time budget of %.1f min reached at step %d", cfg.max_minutes, step)
            break
    save()
    return ckpt_path


def _save_samples(path: Path, x: torch.Tensor, xrec: torch.Tensor) -> None:
    from PIL import Image

    grid = torch.cat([x[:4], xrec[:4].detach()], dim=2)  # originals above reconstructions
    grid = torch.cat(list(grid), dim=2).clamp(0, 1)
    Image.fromarray((grid.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)).save(path)


def load_checkpoint_model(path: str | Path) -> VQGAN:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = VQGAN(ModelConfig.from_json(ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return model.eval()
