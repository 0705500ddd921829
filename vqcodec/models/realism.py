"""The fidelity–realism axis of the decoder: one set of decoder weights for every R in [0, 1].

Two decoders are fine-tuned from the same start with the encoder and codebook frozen, so both read
the same index grids: at R=0 one trained for distortion alone (MSE + L1: the highest PSNR, no
invented texture), at R=1 one trained for realism (perceptual and adversarial terms). Between them
the weights are interpolated linearly, as in network interpolation (Wang et al., "Deep Network
Interpolation for Continuous Imagery Effect Transition", CVPR 2019): decoders that share a start
stay close enough in weight space for the blend to be a smooth transition. Decoding at any R costs
what decoding at R=1 costs, and the knob needs no bits in the file.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass

import torch

from .config import from_dict
from .vqgan import VQGAN

DECODER_PREFIXES = ("decoder.", "post_quant_conv.")


def decoder_keys(model: VQGAN) -> list[str]:
    """The parameters a decoder-only fine-tune changes: everything after the codebook lookup."""
    return [k for k in model.state_dict() if k.startswith(DECODER_PREFIXES)]


@dataclass
class RealismConfig:
    """``default``: the R a decode uses when the caller names none."""

    default: float = 1.0

    def __post_init__(self) -> None:
        check_realism(self.default)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RealismConfig:
        return from_dict(cls, json.loads(text))


def check_realism(realism: float) -> float:
    realism = float(realism)
    if not 0.0 <= realism <= 1.0:  # also refuses NaN
        raise ValueError(f"realism must lie in [0, 1], not {realism}")
    return realism


class DecoderBlend:
    """The decoder weights at any R between a fidelity (R=0) and a realism (R=1) endpoint.

    ``fidelity`` and ``realism`` map every key of :func:`decoder_keys` to a tensor; ``realism``
    None means the base model's own decoder is the R=1 end.
    """

    def __init__(
        self, model: VQGAN, fidelity: dict[str, torch.Tensor], realism: dict[str, torch.Tensor] | None = None,
        config: RealismConfig | None = None,
    ) -> None:
        base = model.state_dict()
        keys = decoder_keys(model)
        for name, ends in (("fidelity", fidelity), ("realism", realism)):
            if ends is None:
                continue
            if set(ends) != set(keys):
                missing, extra = sorted(set(keys) - set(ends)), sorted(set(ends) - set(keys))
                raise ValueError(f"{name} decoder does not match the model: missing {missing[:3]}, unexpected {extra[:3]}")
            for k in keys:
                if ends[k].shape != base[k].shape:
                    raise ValueError(f"{name}.{k} has shape {tuple(ends[k].shape)}, the model's is {tuple(base[k].shape)}")
        for level, overrides in model.level_overrides.items():
            if any(k.startswith(DECODER_PREFIXES) for k in overrides):
                raise ValueError(f"level {level} has its own decoder parameters, which a blend would overwrite")
        self.config = config or RealismConfig()
        # copies: a blend must not change when the model (or the caller's tensors) later does
        self.fidelity = {k: fidelity[k].detach().float().clone() for k in keys}
        self.realism = {k: (base[k] if realism is None else realism[k]).detach().float().clone() for k in keys}

    def state(self, realism: float) -> dict[str, torch.Tensor]:
        """The decoder state dict at ``realism``: exactly an endpoint at 0 and 1."""
        r = check_realism(realism)
        if r == 0.0:
            return dict(self.fidelity)
        if r == 1.0:
            return dict(self.realism)
        return {k: torch.lerp(self.fidelity[k], self.realism[k], r) for k in self.fidelity}

    def apply(self, model: VQGAN, realism: float) -> VQGAN:
        """A copy of ``model`` whose decoder is the blend at ``realism`` (the encoder is shared)."""
        shared = (model.encoder, model.quant_conv, model.quantize)
        blended = copy.deepcopy(model, memo={id(m): m for m in shared})
        blended._level_models = {}  # cached level copies hold the old decoder
        device = model.post_quant_conv.weight.device
        blended.load_state_dict({k: v.to(device) for k, v in self.state(realism).items()}, strict=False)
        return blended
