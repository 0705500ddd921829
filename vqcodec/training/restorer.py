"""Training the lost-index restorer on index grids of the training photos.

The photos (and their mirror images: flipping a grid alone would not give the codes of a flipped
photo) are encoded once at every level of the shipped model; training then samples random crops
of those grids and random masks — scattered positions, or whole interleaved packets as
:func:`vqcodec.codec.container.packet_assignment` lays them out — and learns to predict the
masked indices (cross-entropy at masked positions only).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..codec.container import packet_assignment
from ..codec.image_io import image_to_tensor, load_image, resample
from ..codec.restore import restore_neighbour
from ..models import VQGAN
from ..models.restorer import IndexRestorer, RestorerConfig
from .loop import TrainingRun, warmup_cosine

log = logging.getLogger(__name__)


@torch.inference_mode()
def encode_grids(
    model: VQGAN, files: list[Path], progress: bool = True, scales: tuple[float, ...] = (1.0,)
) -> dict[int, list[np.ndarray]]:
    """Index grids ``{level: [int16 [h,w], ...]}`` of every photo and its mirror image, at every level
    and at each of ``scales`` (the photo resized first, as rate control codes it).

    The encoder runs once per photo, on the model's device; levels differ only in their (possibly
    fine-tuned) 1×1 quant convolution and codebook, which :func:`~vqcodec.training.levels.finetune_level`
    guarantees.
    """
    device = next(model.parameters()).device
    factor = model.config.downsampling
    grids: dict[int, list[np.ndarray]] = {level: [] for level in model.levels}
    jobs = [(path, scale) for path in files for scale in scales]
    for path, scale in tqdm(jobs, desc="encoding grids", unit="img", disable=not progress):
        image = load_image(path)
        if scale != 1.0:
            image = resample(image, (max(factor, round(image.width * scale)), max(factor, round(image.height * scale))))
        w, h = image.width // factor * factor, image.height // factor * factor
        x = image_to_tensor(image.crop((0, 0, w, h)))
        x = torch.cat([x, x.flip(-1)]).to(device)
        features = model.encode_features(x)
        for level in model.levels:
            if any(k.startswith("encoder.") for k in model.level_overrides.get(level, {})):
                raise ValueError(f"level {level} overrides the encoder; encode its grids separately")
            z = model.level_model(level).project(features)
            idx = model.nearest_code(z, model.codebook(level)).cpu().numpy().astype(np.int16)
            grids[level] += [idx[0], idx[1]]
    return grids


def save_grids(path: Path, grids: dict[int, list[np.ndarray]], fingerprint: bytes) -> None:
    arrays = {f"{level}_{i}": g for level, items in grids.items() for i, g in enumerate(items)}
    np.savez_compressed(path, fingerprint=np.frombuffer(fingerprint, dtype=np.uint8), **arrays)


def load_grids(path: Path, fingerprint: bytes) -> dict[int, list[np.ndarray]] | None:
    """The cached grids, or None when absent or made with other weights."""
    if not path.exists():
        return None
    with np.load(path) as data:
        if data["fingerprint"].tobytes() != fingerprint:
            return None
        grids: dict[int, list[tuple[int, np.ndarray]]] = {}
        for key in data.files:
            if key == "fingerprint":
                continue
            level, i = map(int, key.split("_"))
            grids.setdefault(level, []).append((i, data[key]))
    return {level: [g for _, g in sorted(items)] for level, items in grids.items()}


def random_masks(shape: tuple[int, int, int], offsets: np.ndarray, rng: np.random.Generator, max_fraction: float = 0.65) -> np.ndarray:
    """Known-masks ``[B,h,w]``: half scattered positions, half lost packets of a random packet count
    (the packet layout of the full grid, seen through the crop at ``offsets``)."""
    b, h, w = shape
    known = np.ones(shape, dtype=bool)
    for i in range(b):
        fraction = rng.uniform(0.02, max_fraction)
        if rng.random() < 0.5:
            known[i] = rng.random((h, w)) >= fraction
        else:
            packets = int(rng.integers(3, 33))
            oy, ox = offsets[i]
            layout = packet_assignment(oy + h, ox + w, packets)[oy:, ox:]
            lost = rng.permutation(packets)[: max(1, round(fraction * packets))]
            known[i] = ~np.isin(layout, lost)
    return known


@dataclass
class RestorerTrainConfig:
    out: str
    steps: int = 3000
    batch_size: int = 16
    crop: int = 16
    lr: float = 5e-4
    warmup: int = 200
    checkpoint_every: int = 100
    eval_every: int = 500
    log_every: int = 50
    seed: int = 0
    max_minutes: float | None = None


def _batch(grids: dict[int, list[np.ndarray]], cfg: RestorerTrainConfig, rng: np.random.Generator):
    levels = sorted(grids)
    level = levels[int(rng.integers(len(levels)))]
    items, offsets = [], []
    for _ in range(cfg.batch_size):
        g = grids[level][int(rng.integers(len(grids[level])))]
        ch, cw = min(cfg.crop, g.shape[0]), min(cfg.crop, g.shape[1])
        oy, ox = int(rng.integers(g.shape[0] - ch + 1)), int(rng.integers(g.shape[1] - cw + 1))
        items.append(np.pad(g[oy : oy + ch, ox : ox + cw], ((0, cfg.crop - ch), (0, cfg.crop - cw)), mode="edge"))
        offsets.append((oy, ox))
    indices = torch.from_numpy(np.stack(items).astype(np.int64))
    known = torch.from_numpy(random_masks(indices.shape, np.array(offsets), rng))
    return level, indices, known


@torch.inference_mode()
def masked_accuracy(
    restorer: IndexRestorer, model: VQGAN, grids: dict[int, list[np.ndarray]], fraction: float = 0.2, seed: int = 0
) -> dict[str, float]:
    """One-shot accuracy at ``fraction`` scattered lost positions of held-out grids, beside the
    nearest-neighbour baseline's."""
    rng = np.random.default_rng(seed)
    device = next(restorer.parameters()).device
    hits = {"transformer": 0, "neighbour": 0}
    total = 0
    for level, items in grids.items():
        codebook = model.codebook(level).to(device)
        for g in items[::2]:  # the photos, not their mirror images
            idx = torch.from_numpy(g.astype(np.int64))
            known = torch.from_numpy(rng.random(g.shape) >= fraction)
            lost = ~known
            pred = restorer(idx[None].to(device), known[None].to(device), codebook)[0].argmax(-1).cpu()
            hits["transformer"] += int((pred[lost] == idx[lost]).sum())
            hits["neighbour"] += int((restore_neighbour(idx, known, 0)[lost] == idx[lost]).sum())
            total += int(lost.sum())
    return {k: v / max(total, 1) for k, v in hits.items()}


def train_restorer(
    cfg: RestorerTrainConfig,
    model: VQGAN,
    grids: dict[int, list[np.ndarray]],
    held_out: dict[int, list[np.ndarray]] | None = None,
    config: RestorerConfig | None = None,
) -> IndexRestorer:
    """Train (or resume from ``<out>/last.pt``) and return the restorer (eval mode, on CPU)."""
    run = TrainingRun(cfg.out, cfg.max_minutes)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    config = config or RestorerConfig(code_dim=model.config.embed_dim)
    restorer = IndexRestorer(config)
    opt = torch.optim.AdamW(restorer.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.98))
    step = 0
    ckpt = run.load()
    if ckpt is not None:
        restorer = IndexRestorer(RestorerConfig.from_json(ckpt["config"]))
        restorer.load_state_dict(ckpt["model"])
        opt = torch.optim.AdamW(restorer.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.98))
        opt.load_state_dict(ckpt["optimizer"])
        step = int(ckpt["step"])
        log.info("resumed restorer training at step %d", step)
    rng = np.random.default_rng(cfg.seed + step)
    restorer.to(device).train()
    codebooks = {level: model.codebook(level).detach().to(device) for level in grids}

    def save() -> None:
        run.save({"model": restorer.state_dict(), "optimizer": opt.state_dict(), "step": step,
                  "config": restorer.config.to_json(), "train_config": asdict(cfg)})

    run.start(step)
    while step < cfg.steps:
        level, indices, known = _batch(grids, cfg, rng)
        indices, known = indices.to(device), known.to(device)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * warmup_cosine(step, cfg.warmup, cfg.steps)
        logits = restorer(indices, known, codebooks[level])
        lost = ~known
        loss = F.cross_entropy(logits[lost], indices[lost])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(restorer.parameters(), 1.0)
        opt.step()
        step += 1
        run.add({"ce": loss.item(), "acc": float((logits[lost].argmax(-1) == indices[lost]).float().mean())})
        if step % cfg.log_every == 0:
            means = run.means()
            log.info("restorer step %d  ce %.3f  masked acc %.3f  %.2fs/step", step, means["ce"], means["acc"],
                     run.seconds_per_step(step))
        if step % cfg.checkpoint_every == 0:
            save()
        if step % cfg.eval_every == 0 and held_out:
            restorer.eval()
            log.info("held-out accuracy at 20%% loss: %s", masked_accuracy(restorer, model, held_out))
            restorer.train()
        if run.should_stop(step):
            break
    save()
    return restorer.cpu().eval()
