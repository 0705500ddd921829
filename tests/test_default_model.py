"""The embedded default model: present, matching its registry checksum, and working at every level."""

import numpy as np
import pytest

from vqcodec import Codec, registry
from vqcodec.codec import container

pytestmark = pytest.mark.slow  # the shipped model

SPEC = registry.REGISTRY[registry.DEFAULT_MODEL]
PATH = registry.embedded_path(SPEC.filename)


def test_embedded_weights_match_registry():
    assert PATH.is_file(), f"{PATH} missing"
    assert registry.sha256_file(PATH) == SPEC.sha256
    names = (SPEC.restorer_filename, SPEC.realism_filename, SPEC.context_filename)
    companions = [registry.embedded_path(f) for f in names]
    assert registry.sha256_file(companions[1]) == SPEC.realism_sha256
    assert registry.sha256_file(companions[2]) == SPEC.context_sha256
    assert sum(p.stat().st_size for p in [PATH, *companions]) < 40 * 2**20  # the embedded model's budget


def test_shipped_knob_trades_texture_for_fidelity(photo):
    """R=0 (the distortion-trained decoder) is closer to a smooth image than R=1 (the GAN-trained one)."""
    codec = Codec.from_pretrained(device="cpu")
    assert codec.default_realism == 0.5
    img = np.tile(photo, (2, 2, 1))[:64, :96].astype(np.float64)
    data = codec.encode(img.astype(np.uint8)).data
    error = {r: np.square(np.asarray(codec.decode(data, realism=r), dtype=np.float64) - img).mean() for r in (0.0, 1.0)}
    assert error[0.0] < error[1.0]


def test_default_model_round_trip_every_level(photo):
    codec = Codec.from_pretrained(device="cpu")
    assert codec.model_id == registry.DEFAULT_MODEL
    assert len(codec.levels) >= 2
    img = np.tile(photo, (2, 2, 1))[:64, :96]
    sizes = {}
    for level in codec.levels:
        static = codec.encode(img, level=level, entropy="static").data
        assert container.read_header(static).entropy_model == 1  # every shipped level has a measured prior
        data = codec.encode(img, level=level).data
        assert container.read_header(data).entropy_model == 2  # and a context model, used by default
        out = np.asarray(codec.decode(data), dtype=np.float64)
        assert out.shape == img.shape and np.array_equal(out, np.asarray(codec.decode(static), dtype=np.float64))
        sizes[level] = len(data)
        # a trained model reproduces a smooth image far better than a constant grey would
        assert np.abs(out - img).mean() < np.abs(128.0 - img).mean()
    assert sizes[min(sizes)] < sizes[max(sizes)]


def test_wrong_weights_for_registered_name(tmp_path):
    other = tmp_path / "x.safetensors"
    other.write_bytes(PATH.read_bytes()[:-1] + b"\0")
    with pytest.raises(Exception, match="SHA-256"):
        registry.load(registry.DEFAULT_MODEL, weights=other)
