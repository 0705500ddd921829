"""The codec pipeline: image ↔ indices (model) ↔ symbols (entropy coder) ↔ bytes (container).

::

    PIL image ─ pad to ×f (edge) ─ VQGAN.encode_indices ─► indices [1,h,w]
      ─ range coder (level's static prior) ─► payload ─ container.pack ─► .vqc bytes
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import registry
from ..entropy import STATIC_PRIOR, UNIFORM, StaticPrior, decode_symbols, encode_symbols
from ..errors import BitstreamError, ModelMismatchError, VQCodecError
from ..weights import LoadedModel
from . import container
from .image_io import DEFAULT_MAX_PIXELS, image_to_tensor, load_image, to_rgb

log = logging.getLogger(__name__)

ImageLike = Image.Image | np.ndarray | str | Path


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VQCodecError("--device cuda requested but no CUDA GPU is available")
    return device


class Codec:
    """A loaded model plus its entropy models; encodes images to ``.vqc`` bytes and back."""

    def __init__(
        self,
        loaded: LoadedModel,
        model_id: str,
        device: str | torch.device = "auto",
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.device = resolve_device(device)
        self.model = loaded.model.to(self.device).eval()
        self.priors = {size: StaticPrior(freq.numpy().astype(np.int64)) for size, freq in loaded.priors.items()}
        self.fingerprint = loaded.fingerprint
        self.model_id = model_id
        self.max_pixels = max_pixels

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path | None = None,
        weights: str | Path | None = None,
        device: str | torch.device = "auto",
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> Codec:
        """A registered model name (default ``vqcodec-f16``), a ``.safetensors`` or a taming ``.ckpt``."""
        model_id, loaded = registry.load(name_or_path, weights=weights)
        return cls(loaded, model_id, device=device, max_pixels=max_pixels)

    # -- properties ---------------------------------------------------------------------------
    @property
    def factor(self) -> int:
        return self.model.config.downsampling

    @property
    def levels(self) -> list[int]:
        return self.model.levels

    @property
    def default_level(self) -> int:
        return self.model.config.default_level or self.model.config.n_embed

    def _level(self, level: int | None) -> int:
        level = self.default_level if level is None else int(level)
        if level not in self.levels:
            raise VQCodecError(f"level {level} is not available; this model has levels {self.levels}")
        return level

    def prior(self, level: int) -> tuple[int, StaticPrior]:
        """(entropy-model id, prior) used for a level: its measured prior, or uniform if it has none."""
        if level in self.priors:
            return STATIC_PRIOR, self.priors[level]
        return UNIFORM, StaticPrior.uniform(level)

    # -- tensors ------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_indices(self, images: torch.Tensor, level: int | None = None) -> torch.Tensor:
        """Images ``[B,3,H,W]`` in [0,1] → indices ``LongTensor[B,ceil(H/f),ceil(W/f)]`` (edge padding)."""
        level = self._level(level)
        h, w = images.shape[-2:]
        pad_h, pad_w = -h % self.factor, -w % self.factor
        x = images.to(self.device, torch.float32)
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        return self.model.encode_indices(x, level).cpu()

    @torch.inference_mode()
    def decode_indices(self, indices: torch.Tensor, level: int | None = None) -> torch.Tensor:
        """Indices ``[B,h,w]`` → images ``[B,3,f·h,f·w]`` in [0,1] (crop the padding yourself)."""
        level = self._level(level)
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= level):
            raise ValueError(f"indices must lie in [0, {level})")
        return self.model.decode_indices(indices.to(self.device), level).float().cpu()

    # -- bytes --------------------------------------------------------------------------------
    def encode(self, image: ImageLike, level: int | None = None) -> bytes:
        """An image (PIL, ``uint8`` array ``[H,W,3]`` or path) → ``.vqc`` bytes."""
        level = self._level(level)
        if isinstance(image, (str, Path)):
            image = load_image(image, self.max_pixels)
        arr = np.asarray(to_rgb(image) if isinstance(image, Image.Image) else image)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise VQCodecError(f"expected an RGB uint8 array [H,W,3], got {arr.dtype} {arr.shape}")
        height, width = arr.shape[:2]
        if height * width > self.max_pixels:
            raise VQCodecError(f"{width}x{height} image exceeds the limit of {self.max_pixels} pixels")
        x = image_to_tensor(arr)
        indices = self.encode_indices(x, level)[0]
        entropy_id, prior = self.prior(level)
        payload = encode_symbols(indices.numpy(), prior)
        header = container.Header(
            model_id=self.model_id, fingerprint=self.fingerprint, level=level, width=width, height=height,
            grid_width=indices.shape[1], grid_height=indices.shape[0], factor=self.factor, entropy_model=entropy_id,
        )
        return container.pack(header, payload)

    def read_header(self, data: bytes) -> container.Header:
        header, _ = container.unpack(data, self.max_pixels)
        return header

    def check_compatible(self, header: container.Header) -> None:
        if header.model_id != self.model_id:
            raise ModelMismatchError(f"file was encoded with model {header.model_id!r}; loaded model is {self.model_id!r}")
        if header.fingerprint != self.fingerprint:
            raise ModelMismatchError(
                f"file was encoded with different weights of {header.model_id!r} "
                f"(fingerprint {header.fingerprint.hex()}, loaded {self.fingerprint.hex()})"
            )
        if header.factor != self.factor:
            raise BitstreamError(f"downsampling factor {header.factor} does not match the model's {self.factor}")
        if header.level not in self.levels:
            raise BitstreamError(f"level {header.level} is not one of the model's levels {self.levels}")
        expected_entropy, _ = self.prior(header.level)
        if header.entropy_model != expected_entropy:
            raise BitstreamError(f"unknown entropy model id {header.entropy_model} for level {header.level}")

    def decode(self, data: bytes) -> Image.Image:
        """``.vqc`` bytes → RGB PIL image of the original size."""
        header, payload = container.unpack(data, self.max_pixels)
        self.check_compatible(header)
        _, prior = self.prior(header.level)
        count = header.grid_width * header.grid_height
        symbols = decode_symbols(payload, count, prior)
        indices = torch.from_numpy(symbols).view(1, header.grid_height, header.grid_width)
        image = self.decode_indices(indices, header.level)[0, :, : header.height, : header.width]
        arr = (image.permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
        return Image.fromarray(arr, "RGB")
