"""The codec pipeline: image ↔ indices (model) ↔ symbols (entropy coder) ↔ bytes (container).

::

    PIL image ─ pad to ×f (edge) ─ VQGAN.encode_indices ─► indices [1,h,w]
      ─ range coder (level's static prior) ─► payload ─ container.pack ─► .vqc bytes

In packetized mode each packet range-codes its own share of the grid, so whatever packets
arrive can be decoded; lost indices are then restored (:mod:`.restore`) before the decoder runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import registry
from ..entropy import STATIC_PRIOR, UNIFORM, StaticPrior, decode_symbols, encode_symbols
from ..errors import BitstreamError, ImageError, ModelMismatchError, VQCodecError
from ..models.restorer import IndexRestorer
from ..weights import LoadedModel
from . import channel, container
from .image_io import DEFAULT_MAX_PIXELS, image_to_tensor, load_image, to_rgb
from .restore import DEFAULT_STEPS, METHODS, restore_fixed, restore_neighbour, restore_transformer

log = logging.getLogger(__name__)

ImageLike = Image.Image | np.ndarray | str | Path


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VQCodecError("--device cuda requested but no CUDA GPU is available")
    return device


@dataclass
class DecodeReport:
    """What a decode found: packets and indices lost, and how they were restored."""

    packets: int = 0  # K of a packetized file, 0 for a plain one
    packets_lost: list[int] = field(default_factory=list)
    indices: int = 0
    indices_lost: int = 0
    restored_with: str | None = None
    damaged_bytes: int = 0


@contextlib.contextmanager
def _at_least_threads(device: torch.device, minimum: int):
    """PyTorch's single-threaded CPU convolutions round differently (about 1e-6) from its
    multi-threaded ones, which agree with each other: enough to flip a decoded pixel. Running the
    network with at least two intra-op threads makes every thread count give the same pixels."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads >= minimum:
        yield
        return
    torch.set_num_threads(minimum)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Codec:
    """A loaded model plus its entropy models; encodes images to ``.vqc`` bytes and back."""

    def __init__(
        self,
        loaded: LoadedModel,
        model_id: str,
        device: str | torch.device = "auto",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        restorer: IndexRestorer | None = None,
        min_threads: int = 2,
    ) -> None:
        """``min_threads``: CPU intra-op threads the network runs with at least; 2 (the default)
        gives the same pixels at every thread count, 1 suits single-threaded worker pools."""
        self.device = resolve_device(device)
        self.min_threads = min_threads
        self.model = loaded.model.to(self.device).eval()
        self.priors = {size: StaticPrior(freq.numpy().astype(np.int64)) for size, freq in loaded.priors.items()}
        self.fingerprint = loaded.fingerprint
        self.model_id = model_id
        self.max_pixels = max_pixels
        self.restorer = None if restorer is None else restorer.to(self.device).eval()

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path | None = None,
        weights: str | Path | None = None,
        device: str | torch.device = "auto",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        restorer: str | Path | bool = True,
        min_threads: int = 2,
    ) -> Codec:
        """A registered model name (default ``vqcodec-f16``), a ``.safetensors`` or a taming ``.ckpt``.

        ``restorer``: True loads the model's own lost-index transformer when it has one, a path
        loads that file, False loads none (lost indices are then filled from neighbours).
        """
        model_id, loaded = registry.load(name_or_path, weights=weights)
        if restorer is True:
            net = registry.load_restorer_for(name_or_path, loaded)
        elif restorer is False:
            net = None
        else:
            from ..weights import load_restorer

            net = load_restorer(restorer, loaded.fingerprint)
        return cls(loaded, model_id, device=device, max_pixels=max_pixels, restorer=net, min_threads=min_threads)

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
        with _at_least_threads(self.device, self.min_threads):
            return self.model.encode_indices(x, level).cpu()

    @torch.inference_mode()
    def decode_indices(self, indices: torch.Tensor, level: int | None = None) -> torch.Tensor:
        """Indices ``[B,h,w]`` → images ``[B,3,f·h,f·w]`` in [0,1] (crop the padding yourself)."""
        level = self._level(level)
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= level):
            raise ValueError(f"indices must lie in [0, {level})")
        with _at_least_threads(self.device, self.min_threads):
            return self.model.decode_indices(indices.to(self.device), level).float().cpu()

    # -- bytes --------------------------------------------------------------------------------
    def encode(
        self, image: ImageLike, level: int | None = None, packets: int | None = None, packet_bytes: int | None = None
    ) -> bytes:
        """An image (PIL, ``uint8`` array ``[H,W,3]`` or path) → ``.vqc`` bytes.

        ``packets`` (a count) or ``packet_bytes`` (a payload size to stay under) gives a packetized
        file whose packets decode independently; otherwise the file is one plain payload.
        """
        if packets is not None and packet_bytes is not None:
            raise VQCodecError("give packets or packet_bytes, not both")
        level = self._level(level)
        if isinstance(image, (str, Path)):
            image = load_image(image, self.max_pixels)
        arr = np.asarray(to_rgb(image) if isinstance(image, Image.Image) else image)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise VQCodecError(f"expected an RGB uint8 array [H,W,3], got {arr.dtype} {arr.shape}")
        height, width = arr.shape[:2]
        grid_h, grid_w = -(-height // self.factor), -(-width // self.factor)
        if grid_h * grid_w * self.factor**2 > self.max_pixels:
            raise ImageError(
                f"{width}x{height} image ({grid_w * self.factor}x{grid_h * self.factor} once padded to the model's "
                f"{self.factor}-pixel grid) exceeds the limit of {self.max_pixels} pixels"
            )
        if max(grid_h, grid_w) > container.MAX_GRID_SIDE:
            raise ImageError(f"{width}x{height} image: a side longer than {container.MAX_GRID_SIDE * self.factor} pixels "
                             "does not fit the format")
        x = image_to_tensor(arr)
        indices = self.encode_indices(x, level)[0]
        entropy_id, prior = self.prior(level)
        header = container.Header(
            model_id=self.model_id, fingerprint=self.fingerprint, level=level, width=width, height=height,
            grid_width=indices.shape[1], grid_height=indices.shape[0], factor=self.factor, entropy_model=entropy_id,
        )
        if packets is None and packet_bytes is None:
            return container.pack(header, encode_symbols(indices.numpy(), prior))
        return self._pack_packets(header, indices.numpy(), prior, packets, packet_bytes)

    @staticmethod
    def _pack_packets(header, indices: np.ndarray, prior: StaticPrior, packets: int | None, packet_bytes: int | None) -> bytes:
        positions = indices.size
        limit = min(container.MAX_PACKETS, positions)
        if packets is None:
            if packet_bytes < 1:
                raise VQCodecError("packet_bytes must be at least 1")
            packets = -(-len(encode_symbols(indices, prior)) // packet_bytes)  # a first guess, then grow
        if not 1 <= packets <= limit:
            raise VQCodecError(f"packets must be between 1 and {limit} for this {header.grid_width}x{header.grid_height} grid")
        while True:
            assignment = container.packet_assignment(header.grid_height, header.grid_width, packets)
            payloads = [encode_symbols(indices[assignment == k], prior) for k in range(packets)]
            largest = max(len(p) for p in payloads)
            fits = largest <= (packet_bytes or container.MAX_PACKET_PAYLOAD)
            if fits or packets == limit:
                break
            packets = min(limit, packets + 1)
        if largest > container.MAX_PACKET_PAYLOAD:
            raise VQCodecError(f"a packet would hold {largest} bytes, more than {container.MAX_PACKET_PAYLOAD}: use more packets")
        header = dataclasses.replace(header, flags=container.FLAG_PACKETIZED, packets=packets)
        return container.pack_packets(header, payloads)

    def read_header(self, data: bytes) -> container.Header:
        return container.read(data, self.max_pixels).header

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

    def decode(self, data: bytes, **options) -> Image.Image:
        """``.vqc`` bytes → RGB PIL image of the original size (options: see :meth:`decode_with_report`)."""
        return self.decode_with_report(data, **options)[0]

    def decode_with_report(
        self,
        data: bytes,
        restore: str = "auto",
        simulate_loss: float = 0.0,
        loss_unit: str = "packet",
        seed: int = 0,
        restore_steps: int = DEFAULT_STEPS,
    ) -> tuple[Image.Image, DecodeReport]:
        """Decode whatever survived, restore lost indices, and say what was lost.

        ``restore``: "auto" (the transformer when loaded, else "neighbour"), "transformer",
        "neighbour" or "fixed". ``simulate_loss`` drops that fraction of the packets (``loss_unit``
        "packet", packetized files) or of single indices ("index") before decoding, reproducibly
        for a given ``seed``.
        """
        stream = container.read(data, self.max_pixels)
        header = stream.header
        self.check_compatible(header)
        if simulate_loss:
            stream = channel.simulate_loss(stream, simulate_loss, loss_unit, seed)
        indices, known, report = self._read_indices(stream)
        if simulate_loss and loss_unit == "index":
            known &= channel.index_loss_mask(known.shape, simulate_loss, seed)
        report.indices_lost = int((~known).sum())
        if report.indices_lost:
            report.restored_with = self._restore_method(restore)
            indices = self.restore_indices(indices, known, header.level, report.restored_with, restore_steps)
        image = self.decode_indices(indices[None], header.level)[0, :, : header.height, : header.width]
        arr = (image.permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
        return Image.fromarray(arr, "RGB"), report

    def _read_indices(self, stream: container.Stream) -> tuple[torch.Tensor, torch.Tensor, DecodeReport]:
        header = stream.header
        _, prior = self.prior(header.level)
        shape = (header.grid_height, header.grid_width)
        report = DecodeReport(indices=shape[0] * shape[1], damaged_bytes=stream.damaged_bytes)
        if not header.packetized:
            symbols = decode_symbols(stream.payload, report.indices, prior)
            return torch.from_numpy(symbols).view(shape), torch.ones(shape, dtype=torch.bool), report
        report.packets = header.packets
        indices = np.zeros(shape, dtype=np.int64)
        known = np.zeros(shape, dtype=bool)
        assignment = container.packet_assignment(*shape, header.packets)
        for k in range(header.packets):
            if k not in stream.packets:
                report.packets_lost.append(k)
                continue
            where = assignment == k
            try:
                indices[where] = decode_symbols(stream.packets[k], int(where.sum()), prior)
            except BitstreamError:  # CRC-valid but undecodable: treat as lost
                report.packets_lost.append(k)
                continue
            known[where] = True
        return torch.from_numpy(indices), torch.from_numpy(known), report

    def _restore_method(self, restore: str) -> str:
        if restore == "auto":
            return "transformer" if self.restorer is not None else "neighbour"
        if restore not in METHODS:
            raise VQCodecError(f"unknown restoration method {restore!r}; choose from auto, {', '.join(METHODS)}")
        if restore == "transformer" and self.restorer is None:
            raise VQCodecError("no restorer model is loaded for this model (use --restore neighbour, or train one)")
        return restore

    def restore_indices(
        self, indices: torch.Tensor, known: torch.Tensor, level: int, method: str = "transformer", steps: int = DEFAULT_STEPS
    ) -> torch.Tensor:
        """Fill the unknown positions of an index grid ``[h,w]``; known positions stay as they are."""
        _, prior = self.prior(level)
        most_probable = int(np.argmax(prior.frequencies))
        if method == "fixed":
            return restore_fixed(indices, known, most_probable)
        if method == "neighbour":
            return restore_neighbour(indices, known, most_probable)
        if self.restorer is None:
            raise VQCodecError("no restorer model is loaded")
        return restore_transformer(self.restorer, indices, known, self.model.codebook(level), steps)
