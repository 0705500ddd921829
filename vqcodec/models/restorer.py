"""A bidirectional (MaskGIT-style) transformer over a grid of codebook indices.

Given the known indices of a grid it gives, at every position, a distribution over the level's
codes: ``p(index | known indices)``. Tokens enter as their code vectors and leave as scores
against the level's codebook, so one model serves every level (a learned level embedding says
how coarse the codebook is). Positions come from depthwise convolutions (CPVT's positional
encoding generator), so any grid size works. Restoration of lost indices uses it today; the same
interface can later drive a context model for entropy coding.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import from_dict


@dataclass
class RestorerConfig:
    code_dim: int = 32  # the VQGAN's codebook vector size
    width: int = 192
    depth: int = 6
    heads: int = 6
    mlp_ratio: float = 4.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RestorerConfig:
        return from_dict(cls, json.loads(text))


class IndexRestorer(nn.Module):
    MAX_LOG2_LEVEL = 20

    def __init__(self, config: RestorerConfig) -> None:
        super().__init__()
        self.config = config
        c = config.width
        self.code_in = nn.Linear(config.code_dim, c)
        self.mask_token = nn.Parameter(torch.zeros(c))
        self.level_embed = nn.Embedding(self.MAX_LOG2_LEVEL + 1, c)
        self.position = nn.ModuleList([nn.Conv2d(c, c, 3, padding=1, groups=c) for _ in range(2)])
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                c, config.heads, int(c * config.mlp_ratio), dropout=0.0, activation="gelu", batch_first=True, norm_first=True
            )
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(c)
        self.code_out = nn.Linear(c, config.code_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(20.0)))
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, indices: torch.Tensor, known: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """Logits ``[B,h,w,S]`` from indices ``[B,h,w]``, a known-mask ``[B,h,w]`` and the level's codebook ``[S,D]``.

        Indices at unknown positions are ignored (they may hold anything in ``[0, S)``).
        """
        b, h, w = indices.shape
        size = codebook.shape[0]
        codebook = F.normalize(codebook.float(), dim=1)
        tokens = self.code_in(codebook[indices])
        tokens = torch.where(known[..., None], tokens, self.mask_token.to(tokens.dtype))
        level = torch.tensor(min(self.MAX_LOG2_LEVEL, max(0, round(math.log2(size)))), device=indices.device)
        x = (tokens + self.level_embed(level)).permute(0, 3, 1, 2)  # [B,C,h,w]
        x = x + self.position[0](x)
        x = x.flatten(2).transpose(1, 2)  # [B,hw,C]
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == 0:
                grid = x.transpose(1, 2).reshape(b, -1, h, w)
                x = (grid + self.position[1](grid)).flatten(2).transpose(1, 2)
        query = F.normalize(self.code_out(self.norm(x)), dim=-1)
        logits = self.logit_scale.exp() * query @ codebook.t()
        return logits.view(b, h, w, size)
