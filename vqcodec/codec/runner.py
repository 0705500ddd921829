"""The model runner: image batches ↔ index grids on one device, with padding and threads handled here."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from ..errors import VQCodecError
from ..models import VQGAN
from ..models.realism import DecoderBlend, check_realism
from . import granularity, tiling
from .image_io import as_float
from .tiling import Tiling


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VQCodecError(f"device {str(device)!r} requested but no CUDA GPU is available")
    return device


@contextlib.contextmanager
def _at_least_threads(device: torch.device, minimum: int):
    """PyTorch's single-threaded NCHW convolutions round differently (about 1e-6) from its
    multi-threaded ones, which agree with each other: enough to flip a decoded pixel. Channels-last
    taef2 networks agreed at 1 to 8 threads on the machines measured; running the network with at
    least two intra-op threads keeps every thread count giving the same pixels wherever they do not."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads >= minimum:
        yield
        return
    torch.set_num_threads(minimum)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class ModelRunner:
    """Runs a :class:`VQGAN` for the codec: validates levels, pads to the grid, moves tensors.

    ``min_threads``: CPU intra-op threads the network runs with at least; 2 (the default) gives
    the same pixels at every thread count, 1 suits single-threaded worker pools. ``blend``: the
    decoder weights along the fidelity–realism axis, when the model has them. ``tiling``: the tiles
    grids too large to run whole are encoded and decoded in (``taef2`` models; see :mod:`.tiling`), so
    memory follows the tile, not the image. ``progress``: show a progress bar on stderr over those tiles.
    """

    def __init__(
        self, model: VQGAN, device: str | torch.device = "auto", min_threads: int = 2, blend: DecoderBlend | None = None,
        tiling: Tiling = Tiling(), progress: bool = False,
    ) -> None:
        self.device = resolve_device(device)
        self.progress = progress
        self.min_threads = min_threads
        self.tiling = tiling
        self.model = model.to(self.device).eval()
        if model.config.backbone == "taef2":
            # oneDNN's channels-last convolutions are about 1.4x faster on CPU and give the same
            # floats at every thread count (taef2's GroupNorm runs NCHW; see models.taef2.GroupNorm)
            self.model.to(memory_format=torch.channels_last)
        self.blend = blend
        self._blended: tuple[float, VQGAN] | None = None  # the last R decoded at, built once

    @property
    def default_realism(self) -> float | None:
        """The R decodes use when none is named; None when the model has only its own decoder."""
        return None if self.blend is None else self.blend.config.default

    def decoder_model(self, realism: float | None = None) -> VQGAN:
        """The model whose decoder is the blend at ``realism`` (default: the blend's default)."""
        if self.blend is None:
            if realism is not None:
                raise VQCodecError("this model has a single decoder: it has no fidelity-realism setting")
            return self.model
        realism = self.blend.config.default if realism is None else realism
        try:
            realism = check_realism(realism)
        except ValueError as exc:
            raise VQCodecError(str(exc)) from None
        if self._blended is None or self._blended[0] != realism:
            self._blended = (realism, self.blend.apply(self.model, realism).eval())
        return self._blended[1]

    @property
    def factor(self) -> int:
        return self.model.config.downsampling

    @property
    def levels(self) -> list[int]:
        return self.model.levels

    @property
    def default_level(self) -> int:
        return self.model.config.default_level or self.model.config.n_embed

    def level(self, level: int | None) -> int:
        """``level``, or the default one; refuses a level the model does not have."""
        level = self.default_level if level is None else int(level)
        if level not in self.levels:
            raise VQCodecError(f"level {level} is not available; this model has levels {self.levels}")
        return level

    def codebook(self, level: int) -> torch.Tensor:
        return self.model.codebook(level)

    def encode_indices(self, images: torch.Tensor, level: int | None = None) -> torch.Tensor:
        """Images ``[B,3,H,W]`` (float in [0,1], or uint8: converted a tile at a time) → indices
        ``LongTensor[B,ceil(H/f),ceil(W/f)]`` (edge padding)."""
        level = self.level(level)
        return self.encode_levels(images, [level])[level]

    def _quantize(self, z: torch.Tensor, level: int, granular: bool) -> torch.Tensor:
        """Nearest codes of ``z [B,D,h,w]``: ``[B,h,w]``, or with ``granular`` ``[B,3,h,w]``
        (:func:`.granularity.quantize`)."""
        codebook = self.codebook(level)
        if not granular:
            return VQGAN.nearest_code(z, codebook).cpu()
        return granularity.quantize(z, codebook).cpu()

    def _tiled(self, h: int, w: int) -> bool:
        """Whether an ``h×w`` token grid is processed in tiles: too large to run whole, on a backbone
        without global attention."""
        return self.model.config.backbone == "taef2" and h * w > self.tiling.whole

    def _own_encoder(self, level: int) -> bool:
        model = self.model.level_model(level)
        return model is not self.model and any(k.startswith("encoder.") for k in self.model.level_overrides[level])

    @torch.inference_mode()
    def encode_levels(self, images: torch.Tensor, levels: list[int], granular: bool = False) -> dict[int, torch.Tensor]:
        """:meth:`encode_indices` at several levels, running the encoder once; with ``granular``,
        each level's grids at the three granularities (see :meth:`_quantize`)."""
        h, w = images.shape[-2:]
        if self._tiled(-(-h // self.factor), -(-w // self.factor)):
            return self._encode_tiled(images, list(map(self.level, levels)), granular)
        x = F.pad(as_float(images.to(self.device)), (0, -w % self.factor, 0, -h % self.factor), mode="replicate")
        out = {}
        with _at_least_threads(self.device, self.min_threads):
            features = self.model.encode_features(x)
            for level in map(self.level, levels):
                model = self.model.level_model(level)
                z = model.encode_latent(x) if self._own_encoder(level) else model.project(features)
                out[level] = self._quantize(z, level, granular)
        return out

    def _encode_tiled(self, images: torch.Tensor, levels: list[int], granular: bool) -> dict[int, torch.Tensor]:
        """:meth:`encode_levels` tile by tile, into index grids allocated once; each encoder (the
        base one, and a level's own when it has one) runs once over the image. Tiles start at
        multiples of the encoder tile (32 positions), so coarse tokens never straddle two."""
        b, h, w = images.shape[0], -(-images.shape[-2] // self.factor), -(-images.shape[-1] // self.factor)
        shape = (b, len(granularity.GRANULARITIES), h, w) if granular else (b, h, w)
        out = {level: torch.empty(shape, dtype=torch.long) for level in levels}
        encoders: dict[int, list[int]] = {}  # level whose encoder runs → levels projected from it
        for level in levels:
            encoders.setdefault(level if self._own_encoder(level) else self.model.config.n_embed, []).append(level)
        images = images.to(self.device)
        with _at_least_threads(self.device, self.min_threads):
            for encoder, served in encoders.items():
                for rows, cols, features in tiling.encode_features(self.model.level_model(encoder), images, self.tiling, self.progress):
                    for level in served:
                        z = self.model.level_model(level).project(features)
                        out[level][..., rows[0] : rows[1], cols[0] : cols[1]] = self._quantize(z, level, granular)
        return out

    def token_errors(self, image: torch.Tensor, grids: torch.Tensor, level: int, realism: float | None = None) -> torch.Tensor:
        """Each grid position's squared error (summed over its pixels, mean over channels, in [0,1]
        units) when ``image [3,H,W]`` (uint8) is decoded from each of ``grids [G,h,w]`` at
        ``realism``: ``float64 [G,h,w]``. Padding pixels count zero. The decodes are compared with
        the image as their rows come out of the decoder, so no full-size float image is made."""
        f, width = self.factor, image.shape[-1]
        out = torch.zeros(grids.shape, dtype=torch.float64)
        for g, grid in enumerate(grids):

            def sink(top: int, rows: torch.Tensor, g: int = g) -> None:
                x = as_float(image[:, top : top + rows.shape[-2], :width])[None]
                err = ((rows[..., : x.shape[-2], :width] - x) ** 2).mean(1, keepdim=True)
                err = F.pad(err, (0, rows.shape[-1] - width, 0, rows.shape[-2] - x.shape[-2]))
                out[g, top // f : (top + rows.shape[-2]) // f] = F.avg_pool2d(err.double(), f)[0, 0] * f**2

            self.decode_indices(grid[None], level, realism, sink=sink)
        return out

    @torch.inference_mode()
    def decode_indices(
        self, indices: torch.Tensor, level: int | None = None, realism: float | None = None, sink: tiling.Sink | None = None
    ) -> torch.Tensor | None:
        """Indices ``[B,h,w]`` → images ``[B,3,f·h,f·w]`` in [0,1] (crop the padding yourself),
        with the decoder at ``realism`` (see :meth:`decoder_model`). With ``sink`` the rows go to
        it as they are finished instead (see :func:`.tiling.decode`) and nothing is returned."""
        level = self.level(level)
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= level):
            raise ValueError(f"indices must lie in [0, {level})")
        model = self.decoder_model(realism)
        with _at_least_threads(self.device, self.min_threads):
            if self._tiled(*indices.shape[-2:]):
                return tiling.decode(model, indices.to(self.device), level, self.tiling, self.progress, sink)
            images = model.decode_indices(indices.to(self.device), level).float().cpu()
        if sink is None:
            return images
        sink(0, images)
        return None
