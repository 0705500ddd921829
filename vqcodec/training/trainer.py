"""A resumable VQGAN training loop for CPU, one GPU, or several processes under ``torchrun``.

Losses (see :mod:`.losses`): L1 + LPIPS-Squeeze + codebook/commitment, then a PatchGAN loss from
``loss.disc_start``. The codebook starts from K-means of encoder outputs and unused codes are
restarted from recent encoder outputs, so every code stays alive. An exponential moving average
of the weights is kept and is what gets exported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from ..models import VQGAN, ModelConfig
from ..registry import load_realism_for
from ..weights import load_model
from .data import RandomCrops, list_images
from .inputs import deployed_codes
from .loop import TrainingRun
from .losses import LossConfig, VQLoss

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    data: str | list[str]  # one folder or several (e.g. train/ and train_hr/)
    out: str
    steps: int = 2000
    batch_size: int = 8
    crop: int = 128
    max_upscale: float = 1.0  # random enlargement of smaller patches (1 = off)
    lr: float = 5e-4
    lr_pretrained: float = 1e-4
    lr_disc: float = 2e-4
    loss: LossConfig = field(default_factory=LossConfig)
    ema_decay: float = 0.995
    restart_every: int = 50
    checkpoint_every: int = 100
    sample_every: int = 250
    kmeans_samples: int = 40000
    latent_warmup_steps: int = 0
    taef2_dir: str | None = None
    lpips_backbone: str | None = None
    seed: int = 0
    max_minutes: float | None = None
    mixed_precision: bool = True  # bf16 autocast, CUDA only
    init_model: str | None = None  # start a new run from an exported model's weights (fresh optimizer)
    init_realism: float | None = None  # with init_model: its decoder from the fidelity–realism blend at this R
    num_workers: int = 0  # data-loading processes; a GPU needs several to stay busy
    train_only: str | None = None  # "decoder": encoder and codebook frozen, so the indices of old files keep their meaning
    deployed_inputs: bool = False  # decoder only: decode random levels and granularity maps (.inputs)


def load_taef2(model: VQGAN, folder: str | Path) -> None:
    """Initialise the f8 halves of a ``taef2`` model from the pretrained TAEF2 state dicts."""
    folder = Path(folder)
    enc = torch.load(folder / "taef2_encoder.pth", map_location="cpu", weights_only=True)
    dec = torch.load(folder / "taef2_decoder.pth", map_location="cpu", weights_only=True)
    model.encoder.f8.load_state_dict(enc, strict=True)
    model.decoder.f8.load_state_dict(dec, strict=True)


def _seed_worker(worker_id: int) -> None:
    """Give each loader process its own crop sequence (they would all copy the parent's otherwise)."""
    info = torch.utils.data.get_worker_info()
    info.dataset.rng.seed(torch.initial_seed())


def crop_loader(data: RandomCrops, batch_size: int, num_workers: int) -> DataLoader:
    return DataLoader(
        data, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=num_workers,
        worker_init_fn=_seed_worker if num_workers else None, persistent_workers=num_workers > 0,
    )


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


def _initial_model(cfg: TrainConfig) -> VQGAN | None:
    """The model a new run starts from (and whose levels a resumed one needs), if any."""
    if cfg.init_model is None:
        if cfg.init_realism is not None:
            raise ValueError("init_realism needs init_model")
        return None
    loaded = load_model(cfg.init_model)
    if cfg.init_realism is None:
        return loaded.model
    blend = load_realism_for(cfg.init_model, loaded)
    if blend is None:
        raise ValueError(f"init_realism: no fidelity–realism file beside {cfg.init_model}")
    return blend.apply(loaded.model, cfg.init_realism)


def _distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group when started by ``torchrun``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def train(cfg: TrainConfig, model_cfg: ModelConfig) -> Path:
    """Train (or resume) and return the checkpoint path. Checkpoints: ``<out>/last.pt``."""
    rank, world = _distributed()
    run = TrainingRun(cfg.out, cfg.max_minutes, main=rank == 0)
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    else:
        device = torch.device("cpu")
    torch.manual_seed(cfg.seed + rank)
    random.seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)

    model = VQGAN(model_cfg)
    init = _initial_model(cfg)
    if init is not None:  # level codebooks live outside the state dict: a resumed run needs them too
        for size, codebook in init.level_codebooks.items():
            model.add_level(codebook, init.level_overrides.get(size))
    if cfg.train_only == "decoder":
        for frozen in (model.encoder, model.quant_conv, model.quantize):
            frozen.requires_grad_(False)
    elif cfg.train_only is not None:
        raise ValueError(f"train_only must be None or 'decoder', not {cfg.train_only!r}")
    if cfg.deployed_inputs and (cfg.train_only != "decoder" or world > 1):
        raise ValueError("deployed_inputs trains the decoder alone (train_only='decoder'), in one process")
    pretrained = list(model.encoder.f8.parameters()) + list(model.decoder.f8.parameters()) if model_cfg.backbone == "taef2" else []
    pretrained_ids = {id(p) for p in pretrained}
    pretrained = [p for p in pretrained if p.requires_grad]
    others = [p for p in model.parameters() if id(p) not in pretrained_ids and p.requires_grad]
    groups = [{"params": others, "lr": cfg.lr}]
    if pretrained:
        groups.append({"params": pretrained, "lr": cfg.lr_pretrained})
    opt = torch.optim.Adam(groups, betas=(0.5, 0.9))
    criterion = VQLoss(cfg.loss, cfg.lpips_backbone)
    opt_disc = torch.optim.Adam(criterion.discriminator.parameters(), lr=cfg.lr_disc, betas=(0.5, 0.9))

    folders = [cfg.data] if isinstance(cfg.data, str) else cfg.data
    data = RandomCrops([f for folder in folders for f in list_images(folder)], cfg.crop, seed=cfg.seed + rank,
                       max_upscale=cfg.max_upscale)
    batches = _endless(crop_loader(data, cfg.batch_size, cfg.num_workers))
    usage = torch.zeros(model_cfg.n_embed, dtype=torch.long)

    step = 0
    ckpt = run.load()
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if "discriminator" in ckpt:  # checkpoints from before the adversarial loss have none
            criterion.discriminator.load_state_dict(ckpt["discriminator"])
            opt_disc.load_state_dict(ckpt["optimizer_disc"])
        step = int(ckpt["step"])
        usage = ckpt["usage"]
        torch.set_rng_state(ckpt["torch_rng"])
        data.rng.seed(cfg.seed + rank + world * step)
        if rank == 0:
            log.info("resumed from %s at step %d", run.path, step)
    elif init is not None:
        model.load_state_dict(init.state_dict())
        log.info("initialised from %s", cfg.init_model)
    else:
        if model_cfg.backbone == "taef2" and cfg.taef2_dir:
            load_taef2(model, cfg.taef2_dir)
            log.info("initialised f8 encoder/decoder from TAEF2 (%s)", cfg.taef2_dir)
            if cfg.latent_warmup_steps:
                latent_warmup(model, batches, cfg.latent_warmup_steps, cfg.lr)
        log.info("K-means codebook init from %d encoder outputs", cfg.kmeans_samples)
        kmeans_init(model, batches, cfg.kmeans_samples, cfg.seed)  # under DDP, rank 0's copy wins

    model.to(device).train()
    criterion.to(device).train()
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    if ckpt is not None and "ema" in ckpt:
        ema.load_state_dict(ckpt["ema"])
    ckpt = None
    net = DistributedDataParallel(model) if world > 1 else model
    disc = DistributedDataParallel(criterion.discriminator) if world > 1 else criterion.discriminator
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and cfg.mixed_precision else contextlib.nullcontext()
    )

    def save() -> None:
        run.save({
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "optimizer": opt.state_dict(),
            "discriminator": criterion.discriminator.state_dict(),
            "optimizer_disc": opt_disc.state_dict(),
            "step": step,
            "usage": usage,
            "torch_rng": torch.get_rng_state(),
            "model_config": model_cfg.to_json(),
            "train_config": asdict(cfg),
        })

    run.start(step)
    while step < cfg.steps:
        x = next(batches).to(device)
        with autocast:
            if cfg.deployed_inputs:
                codes, idx = deployed_codes(model, x, random.Random(cfg.seed * 1_000_003 + step))
                xrec, qloss = model.decode_latent(codes), torch.zeros((), device=device)
            else:
                xrec, qloss, idx = net(x)
            xrec = xrec.float()
            with _frozen(criterion.discriminator):
                loss, logs = criterion.generator_loss(x, xrec, qloss, step, model.last_layer())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update_parameters(model)
        if criterion.gan_active(step):
            with autocast:
                d_loss, d_logs = criterion.discriminator_loss(x, xrec, disc)
            opt_disc.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_disc.step()
            logs.update(d_logs)
        step += 1
        usage += torch.bincount(idx.flatten().cpu(), minlength=model_cfg.n_embed)
        run.add(logs)

        if step % cfg.restart_every == 0:
            if world > 1:
                dist.all_reduce(usage)
            dead = (usage == 0).nonzero().flatten()
            probs = usage.float() / usage.sum()
            perplexity = float(torch.exp(-(probs[probs > 0] * probs[probs > 0].log()).sum()))
            if cfg.train_only is not None:  # a frozen codebook keeps its unused codes
                dead = dead[:0]
            if len(dead):
                _restart_codes(model, ema, x, dead, rank, world)
            means = run.means()
            if rank == 0:
                log.info(
                    "step %d  %s  used %d/%d  perplexity %.0f  restarted %d  %.2fs/step",
                    step, "  ".join(f"{k} {v:.4f}" for k, v in means.items()),
                    int((usage > 0).sum()), model_cfg.n_embed, perplexity, len(dead), run.seconds_per_step(step),
                )
            usage.zero_()
        if step % cfg.checkpoint_every == 0:
            save()
        if step % cfg.sample_every == 0 and rank == 0:
            _save_samples(run.out / f"sample_{step:06d}.png", x, xrec)
        if run.should_stop(step, lambda local: _stop_all(local, world)):
            break
    save()
    if world > 1:
        dist.barrier()
    return run.path


@contextlib.contextmanager
def _frozen(module: torch.nn.Module):
    """No gradients into ``module`` while the generator's loss passes through it."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


@torch.no_grad()
def _restart_codes(model: VQGAN, ema: AveragedModel, x: torch.Tensor, dead: torch.Tensor, rank: int, world: int) -> None:
    """Move unused codes onto recent encoder outputs (rank 0 chooses, every rank receives)."""
    weight = model.quantize.embedding.weight
    if rank == 0:
        z = model.encode_latent(x).permute(0, 2, 3, 1).reshape(-1, model.config.embed_dim).to(weight.dtype)
        pick = torch.randint(0, z.shape[0], (len(dead),), device=z.device)
        weight.data[dead.to(weight.device)] = z[pick] + 0.01 * torch.randn_like(z[pick])
    if world > 1:
        dist.broadcast(weight.data, 0)
    ema.module.quantize.embedding.weight.data[dead.to(weight.device)] = weight.data[dead.to(weight.device)]


def _stop_all(local: bool, world: int) -> bool:
    """Every rank stops at the same step when any one runs out of time."""
    if world <= 1:
        return local
    flag = torch.tensor([int(local)])
    dist.all_reduce(flag)
    return bool(flag.item())


def _save_samples(path: Path, x: torch.Tensor, xrec: torch.Tensor) -> None:
    from PIL import Image

    grid = torch.cat([x[:4], xrec[:4].detach()], dim=2)  # originals above reconstructions
    grid = torch.cat(list(grid), dim=2).clamp(0, 1)
    Image.fromarray((grid.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)).save(path)


def load_checkpoint_model(path: str | Path, ema: bool = True) -> VQGAN:
    """The model in a training checkpoint: its moving-average weights when it has them."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = VQGAN(ModelConfig.from_json(ckpt["model_config"]))
    if ema and "ema" in ckpt:
        prefix = "module."
        model.load_state_dict({k[len(prefix):]: v for k, v in ckpt["ema"].items() if k.startswith(prefix)})
    else:
        model.load_state_dict(ckpt["model"])
    return model.eval()
