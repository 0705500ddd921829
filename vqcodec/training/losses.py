"""The VQGAN training loss, shared by full training and per-level fine-tuning.

L1 + LPIPS-Squeeze + codebook/commitment, plus taming-transformers' PatchGAN hinge loss whose
weight is set each step by the ratio of reconstruction and adversarial gradients at the decoder's
last layer (Esser et al. 2021), switched on at ``disc_start`` so the autoencoder works first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics import lpips_squeeze


@dataclass
class LossConfig:
    l1_weight: float = 1.0
    mse_weight: float = 0.0  # a fidelity term: pulls the decoder towards the mean, away from invented texture
    perceptual_weight: float = 1.0
    disc_weight: float = 0.1
    disc_start: int | None = None  # step at which the adversarial loss starts; None: never
    disc_channels: int = 32
    disc_layers: int = 3


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


class VQLoss(nn.Module):
    """Owns the frozen LPIPS network and the trainable PatchGAN discriminator."""

    def __init__(self, cfg: LossConfig, lpips_backbone: str | None = None) -> None:
        super().__init__()
        from taming.modules.discriminator.model import NLayerDiscriminator, weights_init

        self.cfg = cfg
        self.perceptual = lpips_squeeze(lpips_backbone)
        self.discriminator = NLayerDiscriminator(input_nc=3, ndf=cfg.disc_channels, n_layers=cfg.disc_layers)
        self.discriminator.apply(weights_init)

    def gan_active(self, step: int) -> bool:
        return self.cfg.disc_start is not None and step >= self.cfg.disc_start and self.cfg.disc_weight > 0

    def generator_loss(
        self, x: torch.Tensor, xrec: torch.Tensor, qloss: torch.Tensor, step: int, last_layer: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss for the autoencoder (and codebook) on images in [0, 1]."""
        l1 = (xrec - x).abs().mean()
        mse = F.mse_loss(xrec, x)
        lp = self.perceptual(xrec, x).mean()
        nll = self.cfg.l1_weight * l1 + self.cfg.mse_weight * mse + self.cfg.perceptual_weight * lp
        loss = nll + qloss
        logs = {"l1": l1.item(), "mse": mse.item(), "lpips_sq": lp.item(), "q": qloss.item()}
        if self.gan_active(step):
            g_loss = -self.discriminator(xrec * 2 - 1).mean()
            nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
            g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
            weight = (nll_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0, 1e4).detach() * self.cfg.disc_weight
            loss = loss + weight * g_loss
            logs.update(g=g_loss.item(), d_weight=weight.item())
        logs["loss"] = loss.item()
        return loss, logs

    def discriminator_loss(
        self, x: torch.Tensor, xrec: torch.Tensor, discriminator: nn.Module | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Hinge loss; ``discriminator`` is this loss's own, or its DistributedDataParallel wrapper."""
        discriminator = discriminator or self.discriminator
        logits = discriminator(torch.cat([x, xrec]).detach() * 2 - 1)  # one pass: DDP-friendly
        logits_real, logits_fake = logits.chunk(2)
        loss = hinge_d_loss(logits_real, logits_fake)
        return loss, {"d": loss.item(), "d_real": logits_real.mean().item(), "d_fake": logits_fake.mean().item()}
