"""The VQGAN: image → grid of codebook indices → image, with K-means sub-codebook levels.

::

    image [B,3,H,W] in [0,1]
      └─ encoder ─ quant_conv ─► z [B,D,H/16,W/16] ─ nearest code (level's codebook) ─► indices [B,h,w]
    indices ─ codebook lookup ─ post_quant_conv ─ decoder ─► image [B,3,H,W] in [0,1]

Attribute names (``encoder``, ``decoder``, ``quantize``, ``quant_conv``, ``post_quant_conv``)
follow taming-transformers' ``VQModel`` so its official checkpoints load unchanged.
A *level* is a smaller codebook (K-means of the full one); it may carry its own fine-tuned
parameters (e.g. ``post_quant_conv`` or the decoder), stored as overrides of the base state dict.
"""

from __future__ import annotations

import contextlib
import copy
import io

import torch
import torch.nn.functional as F
from taming.modules.diffusionmodules.model import Decoder as TamingDecoder
from taming.modules.diffusionmodules.model import Encoder as TamingEncoder
from taming.modules.vqvae.quantize import VectorQuantizer2
from torch import nn

from .config import ModelConfig
from .taef2 import taef2_decoder, taef2_encoder


class _ToF16(nn.Module):
    """f8 latent → f16 features: space-to-depth then a small conv stack."""

    def __init__(self, c_in: int, c_hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.PixelUnshuffle(2),
            nn.Conv2d(4 * c_in, c_hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c_hidden, c_hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c_hidden, c_hidden, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _FromF16(nn.Module):
    """f16 features → f8 latent: the mirror of :class:`_ToF16`."""

    def __init__(self, c_hidden: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_hidden, c_hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c_hidden, c_hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c_hidden, 4 * c_out, 3, padding=1),
            nn.PixelShuffle(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _Taef2Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.f8 = taef2_encoder(cfg.taef2_channels, cfg.taef2_latent_channels)
        self.to_f16 = _ToF16(cfg.taef2_latent_channels, cfg.stage_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_f16(self.f8(x))


class _Taef2Decoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.from_f16 = _FromF16(cfg.stage_channels, cfg.taef2_latent_channels)
        self.f8 = taef2_decoder(cfg.taef2_channels, cfg.taef2_latent_channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.f8(self.from_f16(h))


class VQGAN(nn.Module):
    """Encoder, vector quantizer and decoder with named codebook levels.

    Levels are keyed by codebook size. The full codebook (``config.n_embed``) is always a level.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        if config.backbone == "taming":
            dd = config.ddconfig
            self.encoder = TamingEncoder(**dd)
            with contextlib.redirect_stdout(io.StringIO()):  # taming's Decoder prints its z shape
                self.decoder = TamingDecoder(**dd)
            z_channels = dd["z_channels"]
        else:
            self.encoder = _Taef2Encoder(config)
            self.decoder = _Taef2Decoder(config)
            z_channels = config.stage_channels
        self.quantize = VectorQuantizer2(config.n_embed, config.embed_dim, beta=config.beta, legacy=False)
        self.quant_conv = nn.Conv2d(z_channels, config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, z_channels, 1)
        self.level_codebooks: dict[int, torch.Tensor] = {}
        self.level_overrides: dict[int, dict[str, torch.Tensor]] = {}
        self._level_models: dict[int, VQGAN] = {}  # plain dict: copies stay out of the state dict

    # -- levels -----------------------------------------------------------------------------
    @property
    def levels(self) -> list[int]:
        """Available codebook sizes, largest first."""
        return sorted({self.config.n_embed, *self.level_codebooks}, reverse=True)

    def codebook(self, level: int | None = None) -> torch.Tensor:
        """The level's codebook ``[S, D]`` as used for lookup (the full codebook when ``level`` is None)."""
        if level is None or level == self.config.n_embed:
            codebook = self.quantize.embedding.weight
        elif level in self.level_codebooks:
            weight = self.quantize.embedding.weight  # level tables are plain tensors: follow the model's device
            codebook = self.level_codebooks[level].to(weight.device)
        else:
            raise KeyError(f"model {self.config.name!r} has no level {level}; available: {self.levels}")
        return F.normalize(codebook, dim=1) if self.config.l2_normalize else codebook

    def add_level(self, codebook: torch.Tensor, overrides: dict[str, torch.Tensor] | None = None) -> None:
        size = int(codebook.shape[0])
        if codebook.ndim != 2 or codebook.shape[1] != self.config.embed_dim:
            raise ValueError(f"level codebook must be [S, {self.config.embed_dim}], got {tuple(codebook.shape)}")
        self.level_codebooks[size] = codebook.detach().clone().float()
        self.level_overrides[size] = {k: v.detach().clone() for k, v in (overrides or {}).items()}
        self._level_models.pop(size, None)

    def for_level(self, level: int | None) -> VQGAN:
        """A model whose full codebook is the level's and whose overridden parameters are loaded."""
        if level is None or level == self.config.n_embed:
            return self
        codebook = self.codebook(level)
        model = copy.deepcopy(self)
        model.quantize = VectorQuantizer2(codebook.shape[0], self.config.embed_dim, beta=self.config.beta, legacy=False)
        model.quantize.embedding.weight.data.copy_(codebook)
        model.quantize.to(codebook.device)
        overrides = self.level_overrides.get(level, {})
        if overrides:
            model.load_state_dict(overrides, strict=False)
        model.level_codebooks = {}
        model.level_overrides = {}
        model._level_models = {}
        return model

    # -- the codec contract -----------------------------------------------------------------
    def _to_model_range(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 - 1 if self.config.backbone == "taming" else x

    def _from_model_range(self, x: torch.Tensor) -> torch.Tensor:
        x = (x + 1) / 2 if self.config.backbone == "taming" else x
        return x.clamp(0, 1)

    def encode_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``[B,3,H,W]`` in [0,1] → encoder output, before the 1×1 quant convolution."""
        return self.encoder(self._to_model_range(x))

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Encoder output → pre-quantization latent ``[B,D,h,w]`` (the quant conv, l2-normalised if so configured)."""
        z = self.quant_conv(features)
        return F.normalize(z, dim=1) if self.config.l2_normalize else z

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``[B,3,H,W]`` in [0,1] (H, W multiples of 16) → pre-quantization ``[B,D,h,w]``."""
        return self.project(self.encode_features(x))

    @staticmethod
    def nearest_code(z: torch.Tensor, codebook: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Index of the nearest codeword for each position of ``z [B,D,h,w]`` → ``[B,h,w]``.

        Computed in fp32 in chunks so a 16384-code codebook never needs a huge distance matrix.
        """
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d).float()
        codebook = codebook.float()
        code_sq = (codebook**2).sum(1)
        out = torch.empty(flat.shape[0], dtype=torch.long, device=z.device)
        for start in range(0, flat.shape[0], chunk):
            part = flat[start : start + chunk]
            dist = code_sq[None, :] - 2 * part @ codebook.t()
            out[start : start + chunk] = dist.argmin(1)
        return out.view(b, h, w)

    def encode_indices(self, x: torch.Tensor, level: int | None = None) -> torch.Tensor:
        """Image ``[B,3,H,W]`` → indices ``LongTensor[B,H/16,W/16]`` into the level's codebook."""
        return self.nearest_code(self.level_model(level).encode_latent(x), self.codebook(level))

    def decode_latent(self, z_q: torch.Tensor) -> torch.Tensor:
        return self._from_model_range(self.decoder(self.post_quant_conv(z_q)))

    def indices_to_codes(self, indices: torch.Tensor, level: int | None = None) -> torch.Tensor:
        """Exact inverse of quantization: indices ``[B,h,w]`` → codewords ``[B,D,h,w]``."""
        codebook = self.codebook(level)
        return codebook[indices].permute(0, 3, 1, 2).contiguous()

    def decode_indices(self, indices: torch.Tensor, level: int | None = None) -> torch.Tensor:
        """Indices ``[B,h,w]`` → image ``[B,3,16h,16w]`` in [0,1], using the level's parameters."""
        codes = self.indices_to_codes(indices, level)
        return self.level_model(level).decode_latent(codes)

    def level_model(self, level: int | None) -> VQGAN:
        """Self, or a cached copy with the level's fine-tuned parameters when it has any."""
        if level is None or not self.level_overrides.get(level):
            return self
        if level not in self._level_models:
            self._level_models[level] = self.for_level(level)
        return self._level_models[level]

    def last_layer(self) -> torch.Tensor:
        """Weight of the decoder's final convolution, where the adaptive GAN weight is measured."""
        return self.decoder.conv_out.weight if self.config.backbone == "taming" else self.decoder.f8[-1].weight

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: ``(reconstruction, codebook+commitment loss, indices)``, straight-through."""
        z = self.encode_latent(x)
        codebook = self.codebook()
        idx = self.nearest_code(z.detach(), codebook.detach())
        z_q = codebook[idx].permute(0, 3, 1, 2)
        qloss = self.config.beta * F.mse_loss(z, z_q.detach()) + F.mse_loss(z_q, z.detach())
        z_q = z + (z_q - z).detach()
        return self.decode_latent(z_q), qloss, idx
