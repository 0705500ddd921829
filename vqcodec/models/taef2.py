"""TAEF2-compatible tiny autoencoder (f8, 32 latent channels), written from its published layout.

State-dict keys match ``madebyollin/taesd``'s ``taef2_encoder.pth`` / ``taef2_decoder.pth``
(MIT licence, (c) 2023 Ollin Boer Bohan), so the pretrained halves load with ``strict=True``.
Images are RGB in [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn


class GroupNorm(nn.GroupNorm):
    """GroupNorm on a contiguous (NCHW) copy of its input. PyTorch's channels-last GroupNorm sums
    in an order that depends on the thread count; its NCHW kernel does not, so channels-last
    networks keep giving the same floats, and files the same bytes, at every thread count."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.contiguous())


def _conv(c_in: int, c_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, **kwargs)


class Block(nn.Module):
    """Residual block; the ``mid`` variant first adds a 1×1 bottleneck branch to its input."""

    def __init__(self, channels: int, mid: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            _conv(channels, channels), nn.ReLU(inplace=True), _conv(channels, channels), nn.ReLU(inplace=True), _conv(channels, channels)
        )
        if mid:
            self.pool = nn.Sequential(
                nn.Conv2d(channels, 4 * channels, 1, bias=False),
                GroupNorm(4, 4 * channels),
                nn.ReLU(inplace=True),
                nn.Conv2d(4 * channels, channels, 1, bias=False),
            )
        else:
            self.pool = None
        self.fuse = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x).add_(x))


class Clamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


def taef2_encoder(channels: int = 64, latent_channels: int = 32) -> nn.Sequential:
    """Image [B,3,H,W] in [0,1] → latent [B,32,H/8,W/8]."""
    c = channels
    return nn.Sequential(
        _conv(3, c), Block(c),
        _conv(c, c, stride=2, bias=False), Block(c), Block(c), Block(c),
        _conv(c, c, stride=2, bias=False), Block(c), Block(c), Block(c),
        _conv(c, c, stride=2, bias=False), Block(c, mid=True), Block(c, mid=True), Block(c, mid=True),
        _conv(c, latent_channels),
    )


def taef2_decoder(channels: int = 64, latent_channels: int = 32) -> nn.Sequential:
    """Latent [B,32,h,w] → image [B,3,8h,8w] (unclamped; callers clamp to [0,1])."""
    c = channels
    return nn.Sequential(
        Clamp(), _conv(latent_channels, c), nn.ReLU(inplace=True),
        Block(c, mid=True), Block(c, mid=True), Block(c, mid=True),
        nn.Upsample(scale_factor=2), _conv(c, c, bias=False), Block(c), Block(c), Block(c),
        nn.Upsample(scale_factor=2), _conv(c, c, bias=False), Block(c), Block(c), Block(c),
        nn.Upsample(scale_factor=2), _conv(c, c, bias=False), Block(c),
        _conv(c, 3),
    )
