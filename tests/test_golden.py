"""Golden bytes: what a ``.vqc`` file means must not change with a refactor or a dependency upgrade.

The files in ``tests/golden/`` were written once by this module and are never regenerated for a
passing build: a failure here means files in the wild would decode differently. Regenerate only
with a new format version (``python tests/test_golden.py`` writes them).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqcodec import Codec
from vqcodec.codec import container, payload
from vqcodec.entropy import StaticPrior, decode_symbols, encode_symbols
from vqcodec.models.context import ContextConfig

GOLDEN = Path(__file__).resolve().parent / "golden"
TINY_MODEL = GOLDEN / "tiny.safetensors"  # a fixed tiny model, stored so torch's RNG cannot change it
TINY_CONTEXT = GOLDEN / "tiny.context.safetensors"  # its context model's tables (format version 3)


def golden_symbols() -> tuple[np.ndarray, StaticPrior]:
    """A fixed symbol sequence under a skewed prior, both from integer arithmetic only."""
    counts = (np.arange(1, 65) ** 2)[::-1]
    symbols = (np.arange(300) * 37 + (np.arange(300) // 7) ** 2) % 64
    return symbols, StaticPrior.from_counts(counts)


def golden_image() -> np.ndarray:
    """A 45×70 RGB image (odd size: padding in both directions) from integer arithmetic."""
    yy, xx = np.mgrid[0:45, 0:70]
    img = np.stack([xx * 3 + yy, (yy * 5) ^ xx, (xx * yy) // 4], -1) % 256
    img[12:30, 20:44] = [240, 40, 60]
    return img.astype(np.uint8)




def test_prior_quantization_is_pinned():
    _, prior = golden_symbols()
    digest = hashlib.sha256(prior.frequencies.astype("<i8").tobytes()).hexdigest()
    assert digest == (GOLDEN / "prior.sha256").read_text().strip()


def test_range_coder_bytes_are_pinned():
    symbols, prior = golden_symbols()
    expected = (GOLDEN / "symbols.bin").read_bytes()
    assert encode_symbols(symbols, prior) == expected
    assert np.array_equal(decode_symbols(expected, len(symbols), prior), symbols)


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec.from_pretrained(TINY_MODEL, device="cpu")


TINY_FILES = {
    "plain": {"entropy": "static", "granularity": "16"},
    "packets": {"entropy": "static", "packets": 5, "granularity": "16"},
    "resized": {"entropy": "static", "scale": 0.5, "granularity": "16"},
    "context": {"entropy": "context", "granularity": "16"},
    "context-packets": {"entropy": "context", "packets": 5, "granularity": "16"},
}
MIXED_FILES = {  # format version 4: granularity maps, and an upscaled coded size
    "mixed": {"entropy": "static"},
    "mixed-packets": {"entropy": "static", "packets": 5},
    "mixed-context": {"entropy": "context"},
    "mixed-upscaled": {"entropy": "context", "scale": 1.5},
}

TONE_FILES = {  # format version 5: a tone layer
    "tone": {"entropy": "static", "granularity": "adaptive", "lam": 0.0},
    "tone-packets": {"entropy": "static", "granularity": "16", "packets": 5},
}


def golden_mixed() -> np.ndarray:
    """:func:`golden_image` resized to 210×135 (bicubic): enough blocks for a varied granularity map."""
    return np.asarray(Image.fromarray(golden_image()).resize((210, 135), Image.BICUBIC))


@pytest.mark.parametrize("name", TINY_FILES)
def test_tiny_model_file_bytes_are_pinned(codec, name):
    """A real file from a fixed model and image: container, entropy coder and encoder together."""
    assert codec.encode(golden_image(), level=16, **TINY_FILES[name]).data == (GOLDEN / f"{name}.vqc").read_bytes()


@pytest.mark.parametrize("name", MIXED_FILES)
def test_mixed_granularity_files_are_pinned(codec, name):
    """Version-4 files: the encoder's map (λ = 0) and bytes, and the picture every old file of
    this kind must keep decoding to."""
    data = (GOLDEN / f"{name}.vqc").read_bytes()
    assert codec.encode(golden_mixed(), level=16, granularity="adaptive", lam=0.0, **MIXED_FILES[name]).data == data
    header = container.read_header(data)
    assert header.version == 4 and header.granularity_map
    _assert_decodes_to_its_picture(codec, data, name)


@pytest.mark.parametrize("name", TONE_FILES)
def test_tone_layer_files_are_pinned(codec, name):
    """Version-5 files: the layer's bytes, and the picture with the layer applied."""
    data = (GOLDEN / f"{name}.vqc").read_bytes()
    assert codec.encode(golden_mixed(), level=16, tone="on", **TONE_FILES[name]).data == data
    header = container.read_header(data)
    assert header.version == 5 and header.tone
    _assert_decodes_to_its_picture(codec, data, name)


def _assert_decodes_to_its_picture(codec: Codec, data: bytes, name: str) -> None:
    """Within one level of the stored picture: float rounding may differ between machines."""
    decoded = np.asarray(codec.decode(data), dtype=np.int16)
    expected = np.asarray(Image.open(GOLDEN / f"{name}.png"), dtype=np.int16)
    assert decoded.shape == expected.shape == (135, 210, 3)
    assert np.abs(decoded - expected).max() <= 1


def test_context_coder_bytes_are_pinned(codec):
    """The context model's payload of a fixed grid: its integer arithmetic and the range coder."""
    model = codec.entropy.for_level(16, "context")
    grid = np.load(GOLDEN / "indices.npy")
    expected = (GOLDEN / "context-payload.bin").read_bytes()
    assert model.encode(grid)[0] == expected
    decoded, ok = model.decode([expected], np.zeros(grid.shape, dtype=np.int64))
    assert ok == [True] and np.array_equal(decoded, grid)


@pytest.mark.parametrize("name", ["plain", "packets", "context", "context-packets"])
def test_old_files_decode_to_the_same_indices_and_pixels(codec, name):
    stream = container.read((GOLDEN / f"{name}.vqc").read_bytes())
    header = stream.header
    grid = payload.read(stream, codec.entropy.for_file(header.entropy_model, header.level, header.context_fingerprint))
    assert grid.known.all()
    assert np.array_equal(grid.indices, np.load(GOLDEN / "indices.npy"))
    decoded = np.asarray(codec.decode(stream), dtype=np.int16)
    expected = np.asarray(Image.open(GOLDEN / "decoded.png"), dtype=np.int16)
    assert decoded.shape == expected.shape == (45, 70, 3)
    assert np.abs(decoded - expected).max() <= 1  # float kernels may differ by one level across CPUs


def golden_photo() -> np.ndarray:
    """:func:`golden_image` resized to 140×90 (bicubic): smooth enough to exercise a real model."""
    return np.asarray(Image.fromarray(golden_image()).resize((140, 90), Image.BICUBIC))


SHIPPED_FILES = {
    "f16-1024": (1024, {"entropy": "static", "granularity": "16"}),
    "f16-64-packets": (64, {"entropy": "static", "packets": 7, "granularity": "16"}),
    "f16-1024-context": (1024, {"entropy": "context", "granularity": "16"}),
    "f16-1024-adaptive": (1024, {"entropy": "context", "granularity": "adaptive"}),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED_FILES)
def test_shipped_model_files_are_pinned(name):
    """Files of the shipped model: the same bytes from the encoder, the same picture from its own
    decoder (R=1 of the fidelity–realism knob)."""
    shipped = Codec.from_pretrained("vqcodec-f16", device="cpu")
    data = (GOLDEN / f"{name}.vqc").read_bytes()
    level, options = SHIPPED_FILES[name]
    assert shipped.encode(golden_photo(), level=level, **options).data == data
    if name.startswith("f16-1024"):
        picture = "f16-1024-adaptive.png" if name.endswith("adaptive") else "f16-1024.png"
        decoded = np.asarray(shipped.decode(data, realism=1.0), dtype=np.int16)
        expected = np.asarray(Image.open(GOLDEN / picture), dtype=np.int16)
        assert np.abs(decoded - expected).max() <= 1


def _write() -> None:
    from vqcodec.testing.models import skewed_priors, tiny_model
    from vqcodec.weights import save_model

    GOLDEN.mkdir(exist_ok=True)
    symbols, prior = golden_symbols()
    (GOLDEN / "symbols.bin").write_bytes(encode_symbols(symbols, prior))
    (GOLDEN / "prior.sha256").write_text(hashlib.sha256(prior.frequencies.astype("<i8").tobytes()).hexdigest() + "\n")
    model = tiny_model()
    save_model(TINY_MODEL, model, skewed_priors(model))
    codec = Codec.from_pretrained(TINY_MODEL, device="cpu")
    plain = codec.encode(golden_image(), level=16, entropy="static").data
    (GOLDEN / "plain.vqc").write_bytes(plain)
    for name in ("packets", "resized"):
        (GOLDEN / f"{name}.vqc").write_bytes(codec.encode(golden_image(), level=16, **TINY_FILES[name]).data)
    stream = container.read(plain)
    np.save(GOLDEN / "indices.npy", payload.read(stream, codec.entropy.for_level(16)).indices)
    codec.decode(plain).save(GOLDEN / "decoded.png")
    shipped = Codec.from_pretrained("vqcodec-f16", device="cpu")
    for name in ("f16-1024", "f16-64-packets"):
        level, options = SHIPPED_FILES[name]
        (GOLDEN / f"{name}.vqc").write_bytes(shipped.encode(golden_photo(), level=level, **options).data)
    f16 = (GOLDEN / "f16-1024.vqc").read_bytes()
    shipped.decode(f16, realism=1.0).save(GOLDEN / "f16-1024.png")


def _write_context() -> None:
    """The version-3 golden files (written once, beside the older ones)."""
    from vqcodec.testing.models import tiny_context
    from vqcodec.weights import load_model, save_context

    loaded = load_model(TINY_MODEL)
    save_context(TINY_CONTEXT, tiny_context(loaded.model), loaded.fingerprint, ContextConfig(embed=6, width=8, dilations=[1, 2]))
    codec = Codec.from_pretrained(TINY_MODEL, device="cpu")
    for name in ("context", "context-packets"):
        (GOLDEN / f"{name}.vqc").write_bytes(codec.encode(golden_image(), level=16, **TINY_FILES[name]).data)
    grid = np.load(GOLDEN / "indices.npy")
    (GOLDEN / "context-payload.bin").write_bytes(codec.entropy.for_level(16, "context").encode(grid)[0])
    shipped = Codec.from_pretrained("vqcodec-f16", device="cpu")
    level, options = SHIPPED_FILES["f16-1024-context"]
    (GOLDEN / "f16-1024-context.vqc").write_bytes(shipped.encode(golden_photo(), level=level, **options).data)


def _write_mixed() -> None:
    """The version-4 golden files (written once, beside the older ones)."""
    codec = Codec.from_pretrained(TINY_MODEL, device="cpu")
    for name, options in MIXED_FILES.items():
        data = codec.encode(golden_mixed(), level=16, granularity="adaptive", lam=0.0, **options).data
        (GOLDEN / f"{name}.vqc").write_bytes(data)
        codec.decode(data).save(GOLDEN / f"{name}.png")
    shipped = Codec.from_pretrained("vqcodec-f16", device="cpu")
    level, options = SHIPPED_FILES["f16-1024-adaptive"]
    data = shipped.encode(golden_photo(), level=level, **options).data
    (GOLDEN / "f16-1024-adaptive.vqc").write_bytes(data)
    shipped.decode(data, realism=1.0).save(GOLDEN / "f16-1024-adaptive.png")


def _write_tone() -> None:
    """The version-5 golden files (written once, beside the older ones)."""
    codec = Codec.from_pretrained(TINY_MODEL, device="cpu")
    for name, options in TONE_FILES.items():
        data = codec.encode(golden_mixed(), level=16, tone="on", **options).data
        (GOLDEN / f"{name}.vqc").write_bytes(data)
        codec.decode(data).save(GOLDEN / f"{name}.png")


if __name__ == "__main__":
    writers = {"context": _write_context, "mixed": _write_mixed, "tone": _write_tone}
    sys.exit(writers[sys.argv[1]]() if sys.argv[1:] else _write())
