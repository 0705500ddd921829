"""Image quality metrics: PSNR, MS-SSIM, HaarPSI and LPIPS-Squeeze (also the training's perceptual loss).

LPIPS here is always the ``lpips`` package's SqueezeNet variant with its trunk loaded from a local
ImageNet state dict; report it as "LPIPS-Squeeze", never as plain "LPIPS" (AlexNet).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

DEFAULT_SQUEEZENET = Path(__file__).resolve().parents[2] / "shared/weights/squeezenet1_1/squeezenet1_1-imagenet-fp16-rounded.pth"


def squeezenet_backbone_path(path: str | Path | None = None) -> Path:
    """The SqueezeNet-1.1 ImageNet state dict: argument, ``$VQCODEC_SQUEEZENET``, or ``../shared``."""
    candidate = Path(path or os.environ.get("VQCODEC_SQUEEZENET") or DEFAULT_SQUEEZENET)
    if not candidate.is_file():
        raise FileNotFoundError(
            f"SqueezeNet-1.1 backbone weights not found at {candidate}; LPIPS-Squeeze needs the ImageNet "
            "weights (torchvision key names): pass their path or set VQCODEC_SQUEEZENET."
        )
    return candidate


def lpips_squeeze(backbone: str | Path | None = None) -> nn.Module:
    """``lpips.LPIPS(net="squeeze")`` with its trunk loaded from a local file, never random.

    Call the result on images in [0, 1]: ``loss(x, y)`` → ``[B,1,1,1]``.
    """
    return lpips_with_backbone("squeeze", squeezenet_backbone_path(backbone))


def lpips_with_backbone(net: str, backbone: str | Path) -> nn.Module:
    """``lpips.LPIPS(net=...)`` ("squeeze", "alex" or "vgg") with its trunk from a torchvision
    ImageNet state dict (``features.N.*`` keys) and its calibrated linear layers from the wheel."""
    import lpips

    model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    slice_of = {index: name for name, part in model.net.named_children() for index, _ in part.named_children()}
    features = torch.load(backbone, map_location="cpu", weights_only=True)
    trunk = {}
    for key, value in features.items():
        if key.startswith("features."):
            _, idx, rest = key.split(".", 2)
            trunk[f"{slice_of[idx]}.{idx}.{rest}"] = value.float()
    model.net.load_state_dict(trunk, strict=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return _ZeroOneInput(model)


class _ZeroOneInput(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.inner(x * 2 - 1, y * 2 - 1)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image of ``[B,3,H,W]`` tensors in [0,1] (RGB, peak 1)."""
    mse = ((x - y) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    return -10 * torch.log10(mse)


def ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MS-SSIM per image (pytorch-msssim, data range 1).

    Five scales with an 11-px window need more than 160 px a side; smaller images give NaN.
    """
    from pytorch_msssim import ms_ssim as _ms_ssim

    if min(x.shape[-2:]) <= 160:
        return torch.full((x.shape[0],), float("nan"))
    return _ms_ssim(x, y, data_range=1.0, size_average=False)


HAARPSI_MIN_SIDE = 16  # piq's default 3 Haar scales need a 2**(3+1) px filter on each side


def haarpsi(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """HaarPSI per image of ``[B,3,H,W]`` tensors in [0,1] (``piq.haarpsi``, data range 1) → ``[B]``.

    The Haar wavelet-based perceptual similarity index (Reisenhofer et al. 2018): 1 for identical
    images, lower for worse ones. It is computed from fixed Haar filters on the YIQ channels, with
    no network, and no model here was trained on it, so unlike LPIPS-Squeeze it does not flatter
    vqcodec. piq's defaults: 3 scales on the 2× average-pooled image. Images smaller than
    ``HAARPSI_MIN_SIDE`` (16) px on a side have no value: a ``ValueError`` says so.
    """
    import piq

    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"haarpsi needs two [B,3,H,W] tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < HAARPSI_MIN_SIDE:
        raise ValueError(f"HaarPSI needs images of at least {HAARPSI_MIN_SIDE}×{HAARPSI_MIN_SIDE} px, got "
                         f"{x.shape[-1]}×{x.shape[-2]}")
    return piq.haarpsi(x.float(), y.float(), data_range=1.0, reduction="none")


def squeezenet_features(backbone: str | Path | None = None) -> nn.Module:
    """SqueezeNet-1.1 trunk (ImageNet weights from a local file) → 512-d average-pooled features,
    scaled to norm sqrt(512) so the KID kernel ``(x·y/d + 1)³`` sees cosine similarities.

    Used for KID-Squeeze: a distribution-level realism metric we can compute without Inception.
    Call on images in [0,1].
    """
    from torchvision.models import squeezenet1_1

    net = squeezenet1_1(weights=None)
    state = torch.load(squeezenet_backbone_path(backbone), map_location="cpu", weights_only=True)
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return _PooledFeatures(net.features).eval()


class _ImageNetInput(nn.Module):
    """Base for torchvision classifiers: [0,1] images → ImageNet-normalised input."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class _PooledFeatures(_ImageNetInput):
    def __init__(self, trunk: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.trunk(self.normalise(x)).mean(dim=(2, 3))
        return torch.nn.functional.normalize(pooled, dim=1) * pooled.shape[1] ** 0.5


def patches(x: torch.Tensor, size: int = 256) -> torch.Tensor:
    """Non-overlapping ``size``×``size`` crops of ``[1,3,H,W]`` → ``[N,3,size,size]`` (N may be 0)."""
    _, c, h, w = x.shape
    tiles = [x[0, :, i : i + size, j : j + size] for i in range(0, h - size + 1, size) for j in range(0, w - size + 1, size)]
    return torch.stack(tiles) if tiles else x.new_zeros(0, c, size, size)


def kid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Kernel Inception Distance (unbiased MMD², cubic polynomial kernel) between feature sets ``[N,D]``."""
    real, fake = real.double(), fake.double()
    d = real.shape[1]
    m, n = len(real), len(fake)
    if m < 2 or n < 2:
        return float("nan")
    k = lambda a, b: (a @ b.t() / d + 1) ** 3  # noqa: E731
    krr, kff, krf = k(real, real), k(fake, fake), k(real, fake)
    return float(
        (krr.sum() - krr.diagonal().sum()) / (m * (m - 1))
        + (kff.sum() - kff.diagonal().sum()) / (n * (n - 1))
        - 2 * krf.mean()
    )


def inception_features(weights: str | Path) -> nn.Module:
    """torchvision Inception-v3 with the user's ImageNet weights → 2048-d pool features (for FID).

    We ship no Inception weights and never run it with random ones: ``weights`` must be the
    state dict of torchvision's ``inception_v3`` (e.g. ``inception_v3_google-0cc3c7bd.pth``).
    """
    from torchvision.models import inception_v3

    net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    net.fc = nn.Identity()
    return _InceptionPool(net).eval()


class _InceptionPool(_ImageNetInput):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.net(self.normalise(x))


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``[N,D]``."""
    from scipy import linalg

    a, b = real.double().numpy(), fake.double().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = np.real(linalg.sqrtm(cov_a @ cov_b))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))
