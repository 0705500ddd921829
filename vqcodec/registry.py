"""One registry of model names → where their weights come from, and one loader for all of them.

Resolution order for a registered name: ``weights=`` argument, the package data in
``vqcodec/assets`` (embedded models, found through ``importlib.resources``), then
``$VQCODEC_HOME/<name>/`` (default ``~/.cache/vqcodec``), then a download from the registered URL,
verified by SHA-256. Offline, the error names the file and the folder to put it in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .entropy.context import ContextTables
from .errors import ModelMismatchError, WeightsError
from .fileio import download as download_file
from .fileio import sha256_file
from .models.realism import DecoderBlend
from .models.restorer import IndexRestorer
from .weights import LoadedModel, load_context, load_model, load_realism, load_restorer


def embedded_path(filename: str) -> Path:
    """Where an embedded weights file is (package data: in a checkout, an editable or a wheel install)."""
    return Path(str(resources.files("vqcodec.assets").joinpath(filename)))


@dataclass(frozen=True)
class ModelSpec:
    """A known model. ``format`` is ``"vqcodec"`` (safetensors) or ``"taming"`` (.ckpt + .yaml)."""

    name: str
    format: str
    filename: str
    sha256: str | None
    url: str | None = None
    config_filename: str | None = None
    config_url: str | None = None
    description: str = ""
    restorer_filename: str | None = None  # the lost-index transformer trained for these weights
    restorer_sha256: str | None = None
    realism_filename: str | None = None  # the decoder endpoints of the fidelity–realism knob
    realism_sha256: str | None = None
    context_filename: str | None = None  # the integer tables of the context entropy model
    context_sha256: str | None = None


_TAMING_1024 = "https://heibox.uni-heidelberg.de/d/8088892a516d4e3baf92/files/?p=%2F{}&dl=1"
_TAMING_16384 = "https://heibox.uni-heidelberg.de/d/a7530b09fed84f80a887/files/?p=%2F{}&dl=1"

REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="vqcodec-f16",
            format="vqcodec",
            filename="vqcodec-f16.safetensors",
            sha256="6f2d9cdf1ce83fdcb9694c8245b911f83ee3929de78655f699554e1861cad6f2",
            description="vqcodec's own f16 VQGAN (TAEF2-initialised), embedded in vqcodec/assets",
            restorer_filename="vqcodec-f16.restorer.safetensors",
            restorer_sha256="ab5487ee2cd07d14b4bb95fad68cf1be55ce5572effca91863fea10ffccfb1a7",
            realism_filename="vqcodec-f16.realism.safetensors",
            realism_sha256="1e7ef89683689de8ad7cc2c5a00790a1eb8aacdb748216096c2b92b35b174de1",
            context_filename="vqcodec-f16.context.safetensors",
            context_sha256="5c47aba0b2c79d3487f01836c9e28d86283627668265a51addcb41568040aa3c",
        ),
        ModelSpec(
            name="vqgan_imagenet_f16_1024",
            format="taming",
            filename="last.ckpt",
            sha256=None,  # upstream publishes no checksum
            url=_TAMING_1024.format("ckpts%2Flast.ckpt"),
            config_filename="model.yaml",
            config_url=_TAMING_1024.format("configs%2Fmodel.yaml"),
            description="taming-transformers ImageNet VQGAN, f16, 1024 codes (Esser et al. 2021)",
        ),
        ModelSpec(
            name="vqgan_imagenet_f16_16384",
            format="taming",
            filename="last.ckpt",
            sha256=None,
            url=_TAMING_16384.format("ckpts%2Flast.ckpt"),
            config_filename="model.yaml",
            config_url=_TAMING_16384.format("configs%2Fmodel.yaml"),
            description="taming-transformers ImageNet VQGAN, f16, 16384 codes (the paper's base model)",
        ),
    )
}

DEFAULT_MODEL = "vqcodec-f16"


def model_named_by_file(model_id: str) -> str:
    """The model a ``.vqc`` file names, if it is registered. A file never chooses a local path:
    that would let a stranger's file make the decoder load weights from the working directory."""
    if model_id not in REGISTRY:
        raise ModelMismatchError(
            f"the file was encoded with model {model_id!r}, which is not registered; "
            "pass the model file's path instead of its name if you have it"
        )
    return model_id


def cache_dir() -> Path:
    """Where downloaded weights live: ``$VQCODEC_HOME``, else ``~/.cache/vqcodec``."""
    return Path(os.environ.get("VQCODEC_HOME") or Path.home() / ".cache" / "vqcodec")


def _locate(spec: ModelSpec, filename: str, url: str | None, sha256: str | None, download: bool) -> Path:
    embedded = embedded_path(filename)
    if spec.format == "vqcodec" and embedded.is_file():
        return embedded
    cached = cache_dir() / spec.name / filename
    if cached.is_file():
        return cached
    if url is None:
        raise WeightsError(f"weights for {spec.name!r} not found: expected {embedded} or {cached}")
    if not download:
        raise WeightsError(f"weights for {spec.name!r} not found at {cached}; download them from {url}")
    download_file(url, cached, sha256)
    return cached


def _verify(path: Path, sha256: str | None) -> None:
    if sha256 and sha256_file(path) != sha256:
        raise WeightsError(f"{path}: SHA-256 does not match the registry; the file is corrupt or foreign")


def load(name_or_path: str | Path | None = None, weights: str | Path | None = None, download: bool = True) -> tuple[str, LoadedModel]:
    """Resolve a registered name or a file path to ``(model id, loaded model)``.

    A path may be a vqcodec ``.safetensors`` file or a taming ``.ckpt`` (its ``.yaml`` beside it,
    or in ``../configs/``). ``weights`` overrides where a registered model's file is read from.
    """
    from .taming_checkpoint import load_taming

    name = str(name_or_path or DEFAULT_MODEL)
    spec = REGISTRY.get(name)
    if spec is None:
        path = Path(name)
        if not path.exists():
            raise WeightsError(f"unknown model {name!r}: not a registered name ({', '.join(REGISTRY)}) nor a file")
        if path.suffix == ".ckpt":
            loaded = load_taming(path)
        else:
            loaded = load_model(path)
        return loaded.model.config.name, loaded
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"weights file {path}: no such file")
    else:
        path = _locate(spec, spec.filename, spec.url, spec.sha256, download)
    _verify(path, spec.sha256)
    if spec.format == "vqcodec":
        return spec.name, load_model(path)
    config = None
    if weights is None and spec.config_filename:
        config = _locate(spec, spec.config_filename, spec.config_url, None, download)
    loaded = load_taming(path, config, name=spec.name)
    return spec.name, loaded


def companion_path(kind: str, name_or_path: str | Path | None = None) -> Path | None:
    """Where a model's ``kind`` file ("restorer", "realism" or "context") lives: the registry's file for a
    registered name (verified), ``<stem>.<kind>.safetensors`` beside a model file, or None."""
    name = str(name_or_path or DEFAULT_MODEL)
    spec = REGISTRY.get(name)
    if spec is None:
        candidate = Path(name).with_suffix(f".{kind}.safetensors")
        return candidate if candidate.is_file() else None
    filename, sha256 = getattr(spec, f"{kind}_filename"), getattr(spec, f"{kind}_sha256")
    if filename is None:
        return None
    path = _locate(spec, filename, None, sha256, download=False)
    _verify(path, sha256)
    return path


def load_restorer_for(name_or_path: str | Path | None, loaded: LoadedModel) -> IndexRestorer | None:
    path = companion_path("restorer", name_or_path)
    return None if path is None else load_restorer(path, loaded.fingerprint)


def load_realism_for(name_or_path: str | Path | None, loaded: LoadedModel) -> DecoderBlend | None:
    path = companion_path("realism", name_or_path)
    return None if path is None else load_realism(path, loaded)


def load_context_for(name_or_path: str | Path | None, loaded: LoadedModel) -> ContextTables | None:
    path = companion_path("context", name_or_path)
    return None if path is None else load_context(path, loaded.fingerprint)
