"""Model configuration: a small dataclass that is saved as JSON next to the weights."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

BACKBONES = ("taming", "taef2")

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build the config dataclass ``cls`` from ``data``, refusing fields it does not have: a config
    from a newer vqcodec, or a hostile file, fails loudly instead of being half understood."""
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return cls(**data)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a :class:`~vqcodec.models.vqgan.VQGAN` before loading weights.

    ``backbone="taming"`` builds taming-transformers' Encoder/Decoder from ``ddconfig`` (the
    official checkpoints' layout); ``backbone="taef2"`` builds the TAEF2 f8 autoencoder with a
    learned stride-2 stage to f16 (our default model). ``l2_normalize`` quantizes on the unit sphere (cosine
    lookup, as in ViT-VQGAN), which keeps far more codes in use. ``default_level`` is the codebook size used
    when the caller names none (0: the full codebook).
    """

    name: str
    backbone: str = "taef2"
    n_embed: int = 1024
    embed_dim: int = 32
    beta: float = 0.25
    ddconfig: dict[str, Any] = field(default_factory=dict)
    taef2_channels: int = 64
    taef2_latent_channels: int = 32
    stage_channels: int = 128
    l2_normalize: bool = False
    default_level: int = 0

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; expected one of {BACKBONES}")

    @property
    def downsampling(self) -> int:
        if self.backbone == "taming":
            return 2 ** (len(self.ddconfig["ch_mult"]) - 1)
        return 16

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return from_dict(cls, json.loads(text))
