"""The context entropy model in training form: a small convolutional net, trained with fake
quantization so that its integer export (:mod:`vqcodec.entropy.context`) codes what it learned.

It sees the indices of the grid positions coded in earlier stages (as code vectors of the level's
codebook, embedded) and a known-mask, and scores every code of the level at every position. Tokens
enter and leave through the level's code vectors, so one net serves every level, as the restorer
does. Every weight and activation is rounded (straight-through) to the integer grid the export
computes on; training only has to learn what survives that rounding.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..entropy.context import ACT_MAX, EMBED_MAX, KNOWN_INPUT, SCORE_PER_NAT, SHIFT, UNIT, WEIGHT_MAX
from .config import from_dict


@dataclass
class ContextConfig:
    code_dim: int = 32  # the VQGAN's codebook vector size
    embed: int = 24  # input channels per position (plus one known-flag channel)
    width: int = 64
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 2, 1])  # one 3x3 layer each

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ContextConfig:
        return from_dict(cls, json.loads(text))


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (x.round() - x).detach()


def _weight_scale(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel scale that maps the largest weight to ``WEIGHT_MAX``."""
    return w.detach().abs().flatten(1).amax(1).clamp_min(1e-8) / WEIGHT_MAX


class ContextModel(nn.Module):
    MAX_LOG2_LEVEL = 20

    def __init__(self, config: ContextConfig, levels: list[int]) -> None:
        super().__init__()
        self.config = config
        self.levels = sorted(levels)
        self.embed_in = nn.Linear(config.code_dim, config.embed)
        self.embed_out = nn.Linear(config.code_dim, config.width)
        self.level_in = nn.Embedding(self.MAX_LOG2_LEVEL + 1, config.embed)
        self.level_out = nn.Embedding(self.MAX_LOG2_LEVEL + 1, config.width)
        channels = [config.embed + 1] + [config.width] * len(config.dilations)
        self.convs = nn.ModuleList(nn.Conv2d(channels[i], channels[i + 1], 3) for i in range(len(config.dilations)))
        self.log_temperature = nn.Parameter(torch.tensor(math.log(0.05)))
        self.bias = nn.ParameterDict({str(level): nn.Parameter(torch.zeros(level)) for level in self.levels})
        nn.init.zeros_(self.level_in.weight)
        nn.init.zeros_(self.level_out.weight)

    def _level(self, size: int) -> torch.Tensor:
        return torch.tensor(min(self.MAX_LOG2_LEVEL, max(0, round(math.log2(size)))), device=self.level_in.weight.device)

    def embedding(self, codebook: torch.Tensor) -> torch.Tensor:
        """The level's input embedding ``[S, embed]`` on its integer grid (in units of :data:`UNIT`)."""
        code = F.normalize(codebook.float(), dim=1)
        e = self.embed_in(code) + self.level_in(self._level(len(codebook)))
        return _round_ste(e / UNIT).clamp(-EMBED_MAX, EMBED_MAX)

    def output_table(self, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The level's output table ``[S, width]`` on its integer grid, and that grid's scale."""
        code = F.normalize(codebook.float(), dim=1)
        u = self.embed_out(code) + self.level_out(self._level(len(codebook)))
        scale = u.detach().abs().amax().clamp_min(1e-8) / WEIGHT_MAX
        return _round_ste(u / scale), scale

    def trunk(self, indices: torch.Tensor, known: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """Features ``[B, width, h, w]`` in activation units (integers 0…ACT_MAX) from the known indices."""
        emb = self.embedding(codebook)
        x = emb[indices] * known[..., None]
        x = torch.cat([x, known[..., None].float() * KNOWN_INPUT], -1).permute(0, 3, 1, 2)
        for conv, d in zip(self.convs, self.config.dilations):
            scale = _weight_scale(conv.weight)
            w = _round_ste(conv.weight / scale[:, None, None, None]).clamp(-WEIGHT_MAX, WEIGHT_MAX)
            acc = F.conv2d(F.pad(x, (d, d, d, d)), w, dilation=d) + _round_ste(conv.bias / scale)[:, None, None]
            # the export's requantization: acc · (scale in fixed point) → activation units
            y = acc * (_round_ste(scale * 2**SHIFT) / 2**SHIFT)[:, None, None]
            x = _round_ste(y.clamp(0, ACT_MAX))
        return x

    def logits(self, features: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """Scores ``[N, S]`` in nats for features ``[N, width]`` taken from :meth:`trunk`."""
        table, scale = self.output_table(codebook)
        return features @ table.t() * (scale * self.log_temperature.exp()) + self.bias[str(len(codebook))]

    @torch.no_grad()
    def export(self, codebooks: dict[int, torch.Tensor]) -> dict[str, np.ndarray]:
        """The integer tables :class:`vqcodec.entropy.context.ContextTables` computes with."""
        tables: dict[str, np.ndarray] = {}
        for i, (conv, d) in enumerate(zip(self.convs, self.config.dilations)):
            scale = _weight_scale(conv.weight)
            tables[f"conv.{i}.weight"] = (conv.weight / scale[:, None, None, None]).round().clamp(-WEIGHT_MAX, WEIGHT_MAX)
            tables[f"conv.{i}.bias"] = (conv.bias / scale).round()
            tables[f"conv.{i}.mult"] = (scale * 2**SHIFT).round()
            tables[f"conv.{i}.dilation"] = torch.tensor([d])
        for level, codebook in codebooks.items():
            table, scale = self.output_table(codebook)
            tables[f"level.{level}.embed"] = self.embedding(codebook)
            tables[f"level.{level}.out"] = table
            tables[f"level.{level}.mult"] = (scale * self.log_temperature.exp() * SCORE_PER_NAT * 2**SHIFT).round()[None]
            tables[f"level.{level}.bias"] = (self.bias[str(level)] * SCORE_PER_NAT).round()
        return {k: v.cpu().numpy().astype(np.int32) for k, v in tables.items()}
