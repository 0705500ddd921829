"""Random-crop dataset over a folder of training photos (never Kodak/CLIC)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..codec.image_io import IMAGE_SUFFIXES


def list_images(folder: str | Path) -> list[Path]:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images found under {folder}")
    return files


class RandomCrops(Dataset):
    """Each item: one random ``crop``×``crop`` patch (random flip) as ``[3,crop,crop]`` in [0,1].

    ``source`` is a folder of photos or an explicit list of files (e.g. training minus a held-out split).
    ``max_upscale`` > 1 cuts a smaller patch, of side ``crop / s`` for a random ``s`` in
    [1, max_upscale], and enlarges it to ``crop``: small photos then show the model the large smooth
    regions that a 2048-px photo has at the scale of one token.
    """

    def __init__(self, source: str | Path | list[Path], crop: int = 128, seed: int = 0,
                 max_upscale: float = 1.0) -> None:
        if max_upscale < 1.0:
            raise ValueError(f"max_upscale must be at least 1, not {max_upscale}")
        self.files = list(source) if isinstance(source, list) else list_images(source)
        self.crop = crop
        self.max_upscale = max_upscale
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(self.files[i]) as im:
            im = im.convert("RGB")
            w, h = im.size
            side = round(self.crop / self.rng.uniform(1.0, self.max_upscale)) if self.max_upscale > 1 else self.crop
            if min(w, h) < side:
                scale = side / min(w, h)
                im = im.resize((max(side, round(w * scale)), max(side, round(h * scale))), Image.LANCZOS)
                w, h = im.size
            left = self.rng.randint(0, w - side)
            top = self.rng.randint(0, h - side)
            patch = im.crop((left, top, left + side, top + side))
            if side != self.crop:
                patch = patch.resize((self.crop, self.crop), Image.LANCZOS)
            patch = np.asarray(patch, dtype=np.uint8)
        x = torch.from_numpy(patch.copy()).permute(2, 0, 1).float() / 255.0
        if self.rng.random() < 0.5:
            x = x.flip(-1)
        return x
