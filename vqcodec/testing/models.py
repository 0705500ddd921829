"""Tiny random-init models for tests and fuzzing: built in milliseconds, never the shipped model.

The recipe is fixed (seed, sizes, priors) because ``tests/fuzz_corpus`` holds files encoded with it:
a change here changes their fingerprint and the corpus must be rewritten.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..entropy import ContextTables
from ..models import VQGAN, ModelConfig
from ..models.context import ContextConfig, ContextModel
from ..models.realism import DecoderBlend, RealismConfig, decoder_keys
from ..training.levels import priors_from_counts
from ..weights import load_model, save_model, save_realism

TAMING_DDCONFIG = {
    "double_z": False, "z_channels": 32, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 32,
    "ch_mult": [1, 1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0,
}


def tiny_config(backbone: str = "taef2", name: str = "tiny") -> ModelConfig:
    """A 64-code, 4-dimensional codebook on a few-channel ``taef2`` or ``taming`` backbone."""
    if backbone == "taming":
        return ModelConfig(name=name, backbone="taming", n_embed=64, embed_dim=4, ddconfig=dict(TAMING_DDCONFIG))
    return ModelConfig(name=name, backbone="taef2", n_embed=64, embed_dim=4, taef2_channels=8,
                       taef2_latent_channels=4, stage_channels=8)


def tiny_model(backbone: str = "taef2", name: str = "tiny", levels: tuple[int, ...] = (16, 4), seed: int = 0) -> VQGAN:
    """:func:`tiny_config` with weights from ``seed`` and smaller levels cut from its codebook."""
    torch.manual_seed(seed)
    model = VQGAN(tiny_config(backbone, name)).eval()
    for size in levels:
        model.add_level(model.codebook()[:size] + 0.01)
    return model


def skewed_priors(model: VQGAN) -> dict[int, torch.Tensor]:
    """Static priors that favour low indices, so the entropy coder has something to gain."""
    return priors_from_counts({level: torch.arange(level, 0, -1, dtype=torch.long) ** 2 for level in model.levels})


def save_tiny_model(path: Path) -> Path:
    """Write the default tiny model with skewed priors to ``path``."""
    model = tiny_model()
    save_model(path, model, skewed_priors(model))
    return path


def shifted_decoder(seed: int, scale: float = 0.05) -> VQGAN:
    """The default tiny model with its decoder side moved off its weights: a stand-in for a
    decoder-only fine-tune (same encoder and codebooks)."""
    model = tiny_model()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if key in decoder_keys(model):
                value.add_(scale * torch.randn(value.shape, generator=generator))
    return model


def tiny_context(model: VQGAN, seed: int = 0) -> ContextTables:
    """A small random-init context model for ``model``'s levels, exported to integer tables
    (its savings are random; the code paths and the bit-exactness are what it tests)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ContextModel(ContextConfig(code_dim=model.config.embed_dim, embed=6, width=8, dilations=[1, 2]), model.levels)
        for p in net.bias.values():
            p.data.normal_(0, 1)
    return ContextTables(net.export({level: model.codebook(level) for level in model.levels}))


def save_tiny_knob(path: Path, default: float = 0.25) -> Path:
    """The default tiny model at ``path`` with a realism file beside it: :func:`shifted_decoder`
    at R=0, the model's own decoder at R=1."""
    save_tiny_model(path)
    loaded = load_model(path)
    keys = decoder_keys(loaded.model)
    fidelity = shifted_decoder(1).state_dict()
    blend = DecoderBlend(loaded.model, {k: fidelity[k] for k in keys}, config=RealismConfig(default=default))
    save_realism(path.with_suffix(".realism.safetensors"), blend, loaded.fingerprint, own_realism=False)
    return path


def random_squeezenet(path: Path, seed: int = 0) -> Path:
    """A random-init SqueezeNet-1.1 state dict (torchvision key names) at ``path``: a stand-in for the
    ImageNet backbone of LPIPS-Squeeze and KID-Squeeze, so their code runs without ``../shared``."""
    from torchvision.models import squeezenet1_1

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.save(squeezenet1_1(weights=None).state_dict(), path)
    return path
