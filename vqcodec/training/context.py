"""Training the context entropy model on index grids of the training photos.

Each step takes aligned random crops of one level's grids (offsets a multiple of 4, so every
position keeps its stage) and, for every stage, predicts that stage's codes from the earlier ones:
the summed cross-entropy is the code length the file would have. Some crops are restricted to the
positions of one packet (a random packet layout), as a packetized file codes them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..codec.container import packet_assignment
from ..entropy import LevelEntropy, StaticPrior
from ..entropy.context import N_STAGES, ContextTables, stage_map
from ..models import VQGAN
from ..models.context import ContextConfig, ContextModel
from .loop import TrainingRun, warmup_cosine

log = logging.getLogger(__name__)


@dataclass
class ContextTrainConfig:
    out: str
    steps: int = 4000
    batch_size: int = 24
    crop: int = 20  # grid positions; a multiple of 4
    lr: float = 2e-3
    warmup: int = 100
    packet_share: float = 0.15  # share of crops coded as one packet of a packetized file
    checkpoint_every: int = 100
    eval_every: int = 500
    log_every: int = 50
    seed: int = 0
    max_minutes: float | None = None


def _batch(grids: dict[int, list[np.ndarray]], cfg: ContextTrainConfig, rng: np.random.Generator):
    """``(level, indices [B,c,c], region [B,c,c])``: crops at offsets that are multiples of 4;
    ``region`` is False where a crop ran past its grid or outside its packet."""
    levels = sorted(grids)
    level = levels[int(rng.integers(len(levels)))]
    c = cfg.crop
    items, regions = [], []
    for _ in range(cfg.batch_size):
        g = grids[level][int(rng.integers(len(grids[level])))]
        oy = 4 * int(rng.integers(max(0, g.shape[0] - c) // 4 + 1))
        ox = 4 * int(rng.integers(max(0, g.shape[1] - c) // 4 + 1))
        crop = g[oy : oy + c, ox : ox + c]
        region = np.zeros((c, c), dtype=bool)
        region[: crop.shape[0], : crop.shape[1]] = True
        if rng.random() < cfg.packet_share:
            packets = int(rng.integers(3, 33))
            layout = packet_assignment(oy + c, ox + c, packets)[oy:, ox:]
            region &= layout == int(rng.integers(packets))
        items.append(np.pad(crop, ((0, c - crop.shape[0]), (0, c - crop.shape[1]))))
        regions.append(region)
    return level, torch.from_numpy(np.stack(items).astype(np.int64)), torch.from_numpy(np.stack(regions))


def code_length(model: ContextModel, indices: torch.Tensor, region: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy (nats) of coding ``indices`` stage by stage within ``region``."""
    stages = torch.from_numpy(stage_map(*indices.shape[1:])).to(indices.device)
    total = indices.new_zeros((), dtype=torch.float32)
    for stage in range(N_STAGES):
        target = region & (stages == stage)
        if not target.any():
            continue
        feats = model.trunk(indices, region & (stages < stage), codebook).permute(0, 2, 3, 1)
        logits = model.logits(feats[target], codebook)
        total = total + F.cross_entropy(logits, indices[target], reduction="sum")
    return total


def measure(
    tables: ContextTables, grids: dict[int, list[np.ndarray]], priors: dict[int, StaticPrior], limit: int | None = None
) -> dict[int, dict[str, float]]:
    """Real payload bytes of the held-out grids per level, context model against the static prior."""
    out = {}
    entropy = LevelEntropy(priors, tables)
    for level, items in sorted(grids.items()):
        items = items[::2][:limit]  # the photos, not their mirror images
        coders = {kind: entropy.for_level(level, kind) for kind in ("context", "static")}
        context = sum(len(coders["context"].encode(g)[0]) for g in items)
        static = sum(len(coders["static"].encode(g)[0]) for g in items)
        out[level] = {"context_bytes": context, "static_bytes": static, "saving": 1 - context / max(1, static)}
    return out


def train_context(
    cfg: ContextTrainConfig,
    model: VQGAN,
    grids: dict[int, list[np.ndarray]],
    priors: dict[int, StaticPrior],
    config: ContextConfig | None = None,
) -> ContextModel:
    """Train (or resume from ``<out>/last.pt``) and return the context model (eval mode, on CPU)."""
    run = TrainingRun(cfg.out, cfg.max_minutes)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    ckpt = run.load()
    if ckpt is not None:
        config = ContextConfig.from_json(ckpt["config"])
    net = ContextModel(config or ContextConfig(code_dim=model.config.embed_dim), sorted(grids))
    if ckpt is None:
        for level, prior in priors.items():  # start from the static prior
            if str(level) in net.bias:
                net.bias[str(level)].data = torch.log(torch.from_numpy(prior.probabilities())).float()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=0.0)
    step = 0
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step = int(ckpt["step"])
        log.info("resumed context-model training at step %d", step)
    rng = np.random.default_rng(cfg.seed + step)
    static = LevelEntropy(priors)
    net.to(device).train()
    codebooks = {level: model.codebook(level).detach().to(device) for level in grids}

    def save() -> None:
        run.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                  "config": net.config.to_json(), "train_config": asdict(cfg)})

    run.start(step)
    while step < cfg.steps:
        level, indices, region = _batch(grids, cfg, rng)
        indices, region = indices.to(device), region.to(device)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * warmup_cosine(step, cfg.warmup, cfg.steps)
        count = int(region.sum())
        loss = code_length(net, indices, region, codebooks[level]) / max(1, count)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        bits = loss.item() / math.log(2)
        base = static.for_level(level, "static").prior.cross_entropy_bits(indices[region].cpu().numpy()) / max(1, count)
        run.add({"saving": 1 - bits / base})
        if step % cfg.log_every == 0:
            log.info("context step %d  saving vs static %.3f  %.2fs/step", step, run.means()["saving"],
                     run.seconds_per_step(step))
        if step % cfg.checkpoint_every == 0:
            save()
        if run.should_stop(step):
            break
    save()
    return net.cpu().eval()
