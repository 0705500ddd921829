"""Model files: safetensors weights with the JSON config and level tables in its metadata.

Layout of a vqcodec ``.safetensors`` file:

- metadata ``vqcodec_config``: :class:`ModelConfig` as JSON; ``vqcodec_format``: ``"1"``
- ``model.<key>``: the base state dict (fp16 where stored so)
- ``level.<S>.codebook``: the K-means codebook of size S; ``level.<S>.override.<key>``: parameters
  fine-tuned for that level
- ``prior.<S>``: int32 symbol frequencies of level S (the static entropy model)

A restorer file (the index transformer of :mod:`vqcodec.models.restorer`) holds its state dict
with metadata ``vqcodec_restorer_config`` and ``vqcodec_model_fingerprint``: the hex fingerprint of
the model whose codebooks it was trained on.

A realism file (the decoder endpoints of :mod:`vqcodec.models.realism`) holds ``fidelity.<key>``
and optionally ``realism.<key>`` for every decoder parameter, with metadata
``vqcodec_realism_config`` and ``vqcodec_model_fingerprint``. It sits beside the model instead of in
it, so adding or retraining decoders keeps the model's fingerprint, and every existing file decodes.

A context file (the integer tables of :mod:`vqcodec.entropy.context`) holds those tables, each as
int8, int16 or int32 (the narrowest that holds it), with metadata ``vqcodec_context_config`` (the
training-form config, for reference) and ``vqcodec_model_fingerprint``. Files coded with it name it by its own fingerprint
(:attr:`ContextTables.fingerprint`), so a retrained one is refused by name, never misread.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from .entropy import StaticPrior
from .entropy.context import ContextTables
from .errors import WeightsError
from .fileio import atomic_write
from .models import VQGAN, ModelConfig
from .models.context import ContextConfig
from .models.realism import DecoderBlend, RealismConfig
from .models.restorer import IndexRestorer, RestorerConfig

FORMAT = "1"


def fingerprint(tensors: dict[str, torch.Tensor]) -> bytes:
    """The one identity of a model's weights: the first 8 bytes of SHA-256 over its tensors as
    loaded (names, dtypes, shapes, bytes). Written into every .vqc header, bound into restorer files
    and the restorer's grid cache; changing it orphans every existing file."""
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


def _read_safetensors(path: Path, kind: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(metadata, tensors) of a safetensors file; a missing or unreadable one raises :class:`WeightsError`."""
    if not path.is_file():
        raise WeightsError(f"{kind} file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return meta, load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path} is not a readable safetensors file: {exc}") from None


class LoadedModel:
    """A model, its entropy priors per level, and the fingerprint of the file's tensors."""

    def __init__(self, model: VQGAN, priors: dict[int, StaticPrior], digest: bytes) -> None:
        self.model = model
        self.priors = priors
        self.fingerprint = digest


def load_model(path: str | Path) -> LoadedModel:
    """Load a vqcodec safetensors model; a missing, corrupt or foreign file raises :class:`WeightsError`."""
    path = Path(path)
    meta, tensors = _read_safetensors(path, "model")
    if meta.get("vqcodec_format") != FORMAT or "vqcodec_config" not in meta:
        raise WeightsError(f"{path} is not a vqcodec model file (no vqcodec metadata)")
    try:
        config = ModelConfig.from_json(meta["vqcodec_config"])
        with torch.device("meta"):  # no memory until the file's tensors are in: a config cannot ask for gigabytes
            model = VQGAN(config)
        state = {k[len("model."):]: v.float() for k, v in tensors.items() if k.startswith("model.")}
        model.load_state_dict(state, strict=True, assign=True)
    except (ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise WeightsError(f"{path}: weights do not match their config: {exc}") from None
    try:
        priors = _add_levels(model, tensors)
    except ValueError as exc:
        raise WeightsError(f"{path}: invalid level tables: {exc}") from None
    model.eval()
    return LoadedModel(model, priors, fingerprint(tensors))


def _add_levels(model: VQGAN, tensors: dict[str, torch.Tensor]) -> dict[int, StaticPrior]:
    """Add the file's levels to ``model`` and return its priors, refusing what decoding would trip on later."""
    base = model.state_dict()
    priors: dict[int, torch.Tensor] = {}
    for key, value in tensors.items():
        kind, _, rest = key.partition(".")
        if kind == "level":
            size, _, what = rest.partition(".")
            if what == "codebook":
                if value.ndim != 2 or str(value.shape[0]) != size:
                    raise ValueError(f"{key} has shape {tuple(value.shape)}")
                prefix = f"level.{size}.override."
                overrides = {k[len(prefix):]: v.float() for k, v in tensors.items() if k.startswith(prefix)}
                for name, v in overrides.items():
                    if name not in base or base[name].shape != v.shape:
                        raise ValueError(f"{prefix}{name} matches no model parameter of shape {tuple(v.shape)}")
                model.add_level(value.float(), overrides)
            elif not what.startswith("override."):
                raise ValueError(f"unexpected tensor {key!r}")
        elif kind == "prior":
            priors[int(rest)] = value.long()
        elif kind != "model":
            raise ValueError(f"unexpected tensor {key!r}")
    for size, freq in priors.items():
        if size not in model.levels or freq.shape != (size,):
            raise ValueError(f"prior.{size} has {tuple(freq.shape)} entries but the model has no level of that size")
    return {size: StaticPrior(freq.numpy()) for size, freq in priors.items()}  # ValueError unless valid


def save_restorer(path: str | Path, restorer: IndexRestorer, model_fingerprint: bytes) -> None:
    """Write a restorer (fp16) bound to the fingerprint of its model, atomically."""
    tensors = {k: v.detach().cpu().contiguous().half() for k, v in restorer.state_dict().items()}
    metadata = {
        "vqcodec_format": FORMAT,
        "vqcodec_restorer_config": restorer.config.to_json(),
        "vqcodec_model_fingerprint": model_fingerprint.hex(),
    }
    atomic_write(path, save(tensors, metadata=metadata), force=True)


def load_restorer(path: str | Path, model_fingerprint: bytes | None = None) -> IndexRestorer:
    """Load a restorer; refuse one trained for other weights than ``model_fingerprint``."""
    path = Path(path)
    meta, tensors = _read_companion(path, "restorer", model_fingerprint, "retrain it with scripts/train_restorer.py")
    try:
        with torch.device("meta"):  # memory comes from the file, not from what its config asks for
            restorer = IndexRestorer(RestorerConfig.from_json(meta["vqcodec_restorer_config"]))
        restorer.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True, assign=True)
    except (ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise WeightsError(f"{path}: weights do not match their config: {exc}") from None
    return restorer.eval()


def _read_companion(
    path: Path, kind: str, model_fingerprint: bytes | None, retrain: str
) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(metadata, tensors) of a ``kind`` file that sits beside a model ("restorer", "realism",
    "context"): refused unless it has its config and was made for ``model_fingerprint``."""
    meta, tensors = _read_safetensors(path, kind)
    if f"vqcodec_{kind}_config" not in meta:
        raise WeightsError(f"{path} is not a vqcodec {kind} file (no vqcodec_{kind}_config metadata)")
    _check_bound(path, meta, model_fingerprint, retrain)
    return meta, tensors


def _check_bound(path: Path, meta: dict[str, str], model_fingerprint: bytes | None, retrain: str) -> None:
    if model_fingerprint is not None and meta.get("vqcodec_model_fingerprint") != model_fingerprint.hex():
        raise WeightsError(
            f"{path} was trained for model weights {meta.get('vqcodec_model_fingerprint')}, "
            f"not the loaded ones ({model_fingerprint.hex()}); {retrain}"
        )


def save_realism(path: str | Path, blend: DecoderBlend, model_fingerprint: bytes, own_realism: bool = True) -> None:
    """Write a blend's endpoints (fp16) bound to its model's fingerprint, atomically.
    ``own_realism`` False leaves the R=1 end out: the model's own decoder is used there."""
    ends = {"fidelity": blend.fidelity, **({"realism": blend.realism} if own_realism else {})}
    tensors = {f"{end}.{k}": v.detach().cpu().contiguous().half() for end, state in ends.items() for k, v in state.items()}
    metadata = {
        "vqcodec_format": FORMAT,
        "vqcodec_realism_config": blend.config.to_json(),
        "vqcodec_model_fingerprint": model_fingerprint.hex(),
    }
    atomic_write(path, save(tensors, metadata=metadata), force=True)


def load_realism(path: str | Path, loaded: LoadedModel) -> DecoderBlend:
    """Load the decoder endpoints for ``loaded``; refuse those fine-tuned from other weights."""
    path = Path(path)
    meta, tensors = _read_companion(path, "realism", loaded.fingerprint, "rebuild it with scripts/build_realism.py")
    ends: dict[str, dict[str, torch.Tensor]] = {"fidelity": {}, "realism": {}}
    for key, value in tensors.items():
        end, _, name = key.partition(".")
        if end not in ends:
            raise WeightsError(f"{path}: unexpected tensor {key!r}")
        ends[end][name] = value
    try:
        config = RealismConfig.from_json(meta["vqcodec_realism_config"])
        return DecoderBlend(loaded.model, ends["fidelity"], ends["realism"] or None, config)
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"{path}: {exc}") from None


def save_context(path: str | Path, tables: ContextTables, model_fingerprint: bytes, config: ContextConfig) -> None:
    """Write a context model's integer tables bound to its model's fingerprint, atomically, each in
    the narrowest integer type that holds it (the tables' fingerprint does not depend on it)."""
    tensors = {k: torch.from_numpy(_narrowest(v)) for k, v in tables.arrays.items()}
    metadata = {
        "vqcodec_format": FORMAT,
        "vqcodec_context_config": config.to_json(),
        "vqcodec_model_fingerprint": model_fingerprint.hex(),
    }
    atomic_write(path, save(tensors, metadata=metadata), force=True)


def _narrowest(a: np.ndarray) -> np.ndarray:
    for dtype in (np.int8, np.int16):
        info = np.iinfo(dtype)
        if a.size == 0 or (a.min() >= info.min and a.max() <= info.max):
            return a.astype(dtype)
    return a


def load_context(path: str | Path, model_fingerprint: bytes | None = None) -> ContextTables:
    """Load a context model's tables; refuse one trained for other weights than ``model_fingerprint``."""
    path = Path(path)
    meta, tensors = _read_companion(path, "context", model_fingerprint, "retrain it with scripts/train_context.py")
    if any(v.dtype not in (torch.int8, torch.int16, torch.int32) for v in tensors.values()):
        raise WeightsError(f"{path}: context tables must be integers of at most 32 bits")
    try:
        return ContextTables({k: v.numpy() for k, v in tensors.items()})
    except ValueError as exc:
        raise WeightsError(f"{path}: {exc}") from None
