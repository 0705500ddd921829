"""Loading official taming-transformers VQGAN checkpoints (Lightning ``.ckpt`` + ``model.yaml``).

Read with ``torch.load(weights_only=True)`` and ``yaml.safe_load`` only: no code from the file runs.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
import yaml

from .errors import WeightsError
from .models import VQGAN, ModelConfig
from .weights import LoadedModel, fingerprint


def find_config(ckpt: Path) -> Path:
    """``model.yaml`` next to the checkpoint, ``<stem>.yaml``, or ``../configs/*.yaml`` (taming's logs layout)."""
    candidates = [ckpt.with_suffix(".yaml"), ckpt.parent / "model.yaml"]
    configs = ckpt.parent.parent / "configs"
    if configs.is_dir():
        candidates += sorted(configs.glob("*.yaml"))
    for c in candidates:
        if c.is_file():
            return c
    raise WeightsError(f"no taming config (.yaml) found for {ckpt}; put model.yaml beside it")


def config_from_yaml(path: Path, name: str) -> ModelConfig:
    try:
        doc = yaml.safe_load(path.read_text())
        params = doc["model"]["params"]
        dd = dict(params["ddconfig"])
        return ModelConfig(
            name=name, backbone="taming", n_embed=int(params["n_embed"]), embed_dim=int(params["embed_dim"]), ddconfig=dd
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{path}: not a taming VQModel config ({exc})") from None


def load_taming(ckpt: str | Path, config: str | Path | None = None, name: str | None = None) -> LoadedModel:
    """Build a :class:`VQGAN` (taming backbone) and load the checkpoint's ``state_dict`` strictly.

    Loss-network weights (``loss.*``) stored in training checkpoints are ignored.
    """
    ckpt = Path(ckpt)
    config_path = Path(config) if config else find_config(ckpt)
    cfg = config_from_yaml(config_path, name or ckpt.parent.parent.name or ckpt.stem)
    try:
        raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as exc:
        raise WeightsError(
            f"{ckpt}: cannot be read as a weights-only checkpoint ({str(exc).splitlines()[0]}). "
            "Re-save its state_dict with torch.save if it comes from a trusted source."
        ) from None
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise WeightsError(f"{ckpt}: no state_dict in checkpoint")
    try:
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items() if not k.startswith("loss.")}
        with torch.device("meta"):  # no memory until the checkpoint's tensors are in: a config cannot ask for gigabytes
            model = VQGAN(cfg)
        model.load_state_dict(state, strict=True, assign=True)
    except (RuntimeError, TypeError, KeyError, ValueError, AttributeError) as exc:
        raise WeightsError(f"{ckpt}: weights do not match {config_path}: {str(exc).splitlines()[0]}") from None
    model.eval()
    return LoadedModel(model, {}, fingerprint(model.state_dict()))
