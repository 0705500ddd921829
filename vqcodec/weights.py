"""Model files: safetensors weights with the JSON config and level tables in its metadata.

Layout of a vqcodec ``.safetensors`` file:

- metadata ``vqcodec_config``: :class:`ModelConfig` as JSON; ``vqcodec_format``: ``"1"``
- ``model.<key>``: the base state dict (fp16 where stored so)
- ``level.<S>.codebook``: the K-means codebook of size S; ``level.<S>.override.<key>``: parameters
  fine-tuned for that level
- ``prior.<S>``: int32 symbol frequencies of level S (the static entropy model)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from .errors import WeightsError
from .fileio import atomic_write
from .models import VQGAN, ModelConfig

FORMAT = "1"


def fingerprint(tensors: dict[str, torch.Tensor]) -> bytes:
    """8-byte digest of the tensors as loaded (names, dtypes, shapes, bytes), written into bitstreams."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.digest()[:8]


def model_tensors(model: VQGAN, priors: dict[int, torch.Tensor] | None = None, half: bool = True) -> dict[str, torch.Tensor]:
    def store(t: torch.Tensor) -> torch.Tensor:
        t = t.detach().cpu().contiguous()
        return t.half() if half and t.is_floating_point() else t

    out = {f"model.{k}": store(v) for k, v in model.state_dict().items()}
    for size, codebook in model.level_codebooks.items():
        out[f"level.{size}.codebook"] = store(codebook)
        for k, v in model.level_overrides.get(size, {}).items():
            out[f"level.{size}.override.{k}"] = store(v)
    for size, freq in (priors or {}).items():
        out[f"prior.{size}"] = freq.to(torch.int32).contiguous()
    return out


def save_model(path: str | Path, model: VQGAN, priors: dict[int, torch.Tensor] | None = None, half: bool = True) -> None:
    """Write the model atomically (temp file + rename), replacing an existing file."""
    tensors = model_tensors(model, priors, half)
    data = save(tensors, metadata={"vqcodec_format": FORMAT, "vqcodec_config": model.config.to_json()})
    atomic_write(path, data, force=True)


class LoadedModel:
    """A model, its entropy priors per level, and the fingerprint of the file's tensors."""

    def __init__(self, model: VQGAN, priors: dict[int, torch.Tensor], digest: bytes) -> None:
        self.model = model
        self.priors = priors
        self.fingerprint = digest


def load_model(path: str | Path) -> LoadedModel:
    """Load a vqcodec safetensors model; a missing, corrupt or foreign file raises :class:`WeightsError`."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path} is not a readable safetensors file: {exc}") from None
    if meta.get("vqcodec_format") != FORMAT or "vqcodec_config" not in meta:
        raise WeightsError(f"{path} is not a vqcodec model file (no vqcodec metadata)")
    try:
        config = ModelConfig.from_json(meta["vqcodec_config"])
        model = VQGAN(config)
        state = {k[len("model."):]: v.float() for k, v in tensors.items() if k.startswith("model.")}
        model.load_state_dict(state, strict=True)
    except (ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise WeightsError(f"{path}: weights do not match their config: {exc}") from None
    priors: dict[int, torch.Tensor] = {}
    for key, value in tensors.items():
        parts = key.split(".")
        if parts[0] == "level" and parts[2] == "codebook":
            size = int(parts[1])
            overrides = {
                k[len(f"level.{size}.override."):]: v.float()
                for k, v in tensors.items()
                if k.startswith(f"level.{size}.override.")
            }
            model.add_level(value.float(), overrides)
        elif parts[0] == "prior":
            priors[int(parts[1])] = value.long()
    model.eval()
    return LoadedModel(model, priors, fingerprint(tensors))
