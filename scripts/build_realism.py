#!/usr/bin/env python
"""Write a model's fidelity–realism file from two decoder-only fine-tunes.

    python scripts/build_realism.py --model vqcodec/assets/vqcodec-f16.safetensors \\
        --fidelity runs/fidelity/last.pt --realism runs/realism/last.pt --default 0.5 \\
        --out vqcodec/assets/vqcodec-f16.realism.safetensors

``--fidelity`` (R=0) and ``--realism`` (R=1) are training checkpoints (``last.pt``: their weight
average, or the live weights with ``--live``) or exported ``.safetensors`` models. Both must have
been trained with ``--train-only decoder`` from ``--model``: their encoder and codebooks are
checked against it, since a decoder that reads the indices differently would decode every
existing file wrongly. Without ``--realism`` the model's own decoder is the R=1 end. The file is
bound to the model's fingerprint; the model file itself is not changed, so every ``.vqc`` file
written with it still decodes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vqcodec.models import VQGAN  # noqa: E402
from vqcodec.models.realism import DecoderBlend, RealismConfig, decoder_keys  # noqa: E402
from vqcodec.training.trainer import load_checkpoint_model  # noqa: E402
from vqcodec.weights import load_model, save_realism  # noqa: E402


def endpoint(path: str, base: VQGAN, live: bool) -> dict[str, torch.Tensor]:
    """The decoder weights of a checkpoint or model, after checking it reads indices as ``base`` does."""
    model = load_checkpoint_model(path, ema=not live) if path.endswith(".pt") else load_model(path).model
    state, reference = model.state_dict(), base.state_dict()
    decoder = set(decoder_keys(base))
    for key, value in reference.items():
        if key in decoder:
            continue
        # the frozen parts went through fp32 training and an fp32 weight average: equal at fp16
        if key not in state or not torch.equal(state[key].half(), value.half()):
            raise SystemExit(f"{path}: {key} differs from the model's; train it with --train-only decoder from that model")
    return {k: state[k] for k in decoder}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the .safetensors model both decoders were fine-tuned from")
    p.add_argument("--fidelity", required=True, help="the R=0 decoder: a last.pt checkpoint or a .safetensors model")
    p.add_argument("--realism", help="the R=1 decoder (default: the model's own)")
    p.add_argument("--live", action="store_true", help="take checkpoints' live weights instead of their average")
    p.add_argument("--default", type=float, default=1.0, help="the R decodes use when none is given")
    p.add_argument("--out", required=True, help="output file, conventionally <model stem>.realism.safetensors")
    args = p.parse_args(argv)
    loaded = load_model(args.model)
    fidelity = endpoint(args.fidelity, loaded.model, args.live)
    realism = endpoint(args.realism, loaded.model, args.live) if args.realism else None
    blend = DecoderBlend(loaded.model, fidelity, realism, RealismConfig(default=args.default))
    save_realism(args.out, blend, loaded.fingerprint, own_realism=realism is not None)
    print(f"wrote {args.out}: R=0 from {args.fidelity}, R=1 from {args.realism or args.model}, default R={args.default:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
