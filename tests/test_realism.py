"""The fidelity–realism knob: decoder endpoints beside a model, blended at decode time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import load_script, skewed_priors, tiny_model
from PIL import Image

from vqcodec import Codec
from vqcodec.errors import VQCodecError, WeightsError
from vqcodec.models.realism import DecoderBlend, RealismConfig, decoder_keys
from vqcodec.testing.models import shifted_decoder
from vqcodec.weights import load_model, save_model, save_realism


@pytest.fixture
def knob(tmp_path):
    """A tiny model, a fidelity fine-tune of its decoder, and the realism file beside the model
    (found by name like a restorer) with the model's own decoder at R=1 and default R=0.25."""
    model_path = tmp_path / "tiny.safetensors"
    base = tiny_model()
    save_model(model_path, base, skewed_priors(base))
    fidelity_path = tmp_path / "fidelity.safetensors"
    save_model(fidelity_path, shifted_decoder(1))
    load = load_script("build_realism")
    assert load.main(["--model", str(model_path), "--fidelity", str(fidelity_path), "--default", "0.25",
                      "--out", str(tmp_path / "tiny.realism.safetensors")]) == 0
    return model_path, fidelity_path


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def test_endpoints_are_the_two_decoders_and_between_is_their_blend(knob):
    model_path, fidelity_path = knob
    codec = Codec.from_pretrained(model_path, device="cpu")
    assert codec.default_realism == 0.25
    data = codec.encode(_image()).data
    own = np.asarray(Codec.from_pretrained(model_path, device="cpu", realism=False).decode(data))
    indices = codec.encode_indices(torch.from_numpy(_image()).permute(2, 0, 1)[None] / 255.0)
    fidelity = Codec.from_pretrained(fidelity_path, device="cpu").decode_indices(indices)
    assert torch.equal(codec.decode_indices(indices, realism=0.0), fidelity)
    at = {r: np.asarray(codec.decode(data, realism=r)) for r in (0.0, 0.25, 1.0)}
    assert np.array_equal(at[1.0], own)
    assert not np.array_equal(at[0.0], at[1.0])
    assert not np.array_equal(at[0.25], at[0.0]) and not np.array_equal(at[0.25], at[1.0])
    assert np.array_equal(np.asarray(codec.decode(data)), at[0.25])  # the file's default


def test_blend_weights_are_linear_in_r():
    base, fine = tiny_model(), shifted_decoder(2)
    keys = decoder_keys(base)
    blend = DecoderBlend(base, {k: fine.state_dict()[k] for k in keys})
    mid = blend.state(0.3)
    for k in keys:
        expected = 0.7 * fine.state_dict()[k] + 0.3 * base.state_dict()[k]
        assert torch.allclose(mid[k], expected, atol=1e-6)
    blended = blend.apply(base, 0.3)
    assert blended.encoder is base.encoder  # the encoder is shared, not copied
    assert torch.equal(blended.state_dict()[keys[0]], mid[keys[0]])
    assert torch.equal(base.state_dict()[keys[0]], tiny_model().state_dict()[keys[0]])  # the base is untouched


@pytest.mark.parametrize("realism", [-0.1, 1.5, float("nan")])
def test_out_of_range_realism_is_refused(knob, realism):
    codec = Codec.from_pretrained(knob[0], device="cpu")
    data = codec.encode(_image()).data
    with pytest.raises(VQCodecError, match="realism must lie in"):
        codec.decode(data, realism=realism)


def test_single_decoder_model_refuses_a_realism(codec):
    data = codec.encode(_image()).data
    assert codec.default_realism is None
    codec.decode(data)
    with pytest.raises(VQCodecError, match="single decoder"):
        codec.decode(data, realism=0.5)


def test_realism_file_is_bound_to_its_model(knob, tmp_path):
    model_path, _ = knob
    other = tmp_path / "other.safetensors"
    save_model(other, tiny_model(seed=3))
    with pytest.raises(WeightsError, match="trained for model weights"):
        Codec.from_pretrained(other, device="cpu", realism=tmp_path / "tiny.realism.safetensors")


def test_build_refuses_a_fine_tune_that_moved_the_encoder(tmp_path, knob):
    model_path, _ = knob
    moved = tiny_model()
    with torch.no_grad():
        next(moved.encoder.parameters()).add_(0.1)
    moved_path = tmp_path / "moved.safetensors"
    save_model(moved_path, moved)
    with pytest.raises(SystemExit, match="differs from the model"):
        load_script("build_realism").main(["--model", str(model_path), "--fidelity", str(moved_path),
                                           "--out", str(tmp_path / "x.safetensors")])


def test_realism_config_round_trips_and_refuses_unknown_fields():
    assert RealismConfig.from_json(RealismConfig(default=0.4).to_json()) == RealismConfig(default=0.4)
    with pytest.raises(ValueError, match="unknown RealismConfig fields"):
        RealismConfig.from_json('{"default": 0.5, "extra": 1}')
    with pytest.raises(ValueError):
        RealismConfig(default=2.0)


def test_realism_file_keeps_the_model_fingerprint(knob, tmp_path):
    """Adding the knob must not orphan files written before it: the model file is untouched."""
    model_path, _ = knob
    before = load_model(model_path).fingerprint
    assert Codec.from_pretrained(model_path, device="cpu").fingerprint == before


def test_cli_decode_realism(knob, tmp_path, capsys):
    from vqcodec.cli import main

    model_path, _ = knob
    src = tmp_path / "in.png"
    Image.fromarray(_image()).save(src)
    vqc = tmp_path / "in.vqc"
    assert main(["encode", str(src), "-o", str(vqc), "--model", str(model_path)]) == 0
    outs = {}
    for r in ("0", "1"):
        out = tmp_path / f"r{r}.png"
        assert main(["decode", str(vqc), "-o", str(out), "--model", str(model_path), "--realism", r]) == 0
        assert f"realism {r}" in capsys.readouterr().err
        outs[r] = np.asarray(Image.open(out))
    assert not np.array_equal(outs["0"], outs["1"])
    assert main(["decode", str(vqc), "-o", str(tmp_path / "bad.png"), "--model", str(model_path), "--realism", "2"]) != 0
    err = capsys.readouterr().err
    assert "realism must lie in [0, 1]" in err and "Traceback" not in err
    assert not (tmp_path / "bad.png").exists()


def test_pillow_configure_realism(knob, tmp_path):
    import vqcodec.pillow as plugin

    model_path, _ = knob
    Image.fromarray(_image()).save(tmp_path / "a.vqc", model=str(model_path))
    codec = Codec.from_pretrained(model_path, device="cpu")
    data = (tmp_path / "a.vqc").read_bytes()
    try:
        for r in (0.0, 1.0):
            plugin.configure(model=str(model_path), device="cpu", realism=r)
            with Image.open(tmp_path / "a.vqc") as im:
                assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(codec.decode(data, realism=r)))
    finally:
        plugin.configure()


def test_save_realism_with_own_endpoint_round_trips(tmp_path):
    base = tiny_model()
    path = tmp_path / "m.safetensors"
    save_model(path, base)
    loaded = load_model(path)
    keys = decoder_keys(loaded.model)
    blend = DecoderBlend(loaded.model, {k: shifted_decoder(4).state_dict()[k] for k in keys},
                         {k: shifted_decoder(5).state_dict()[k] for k in keys}, RealismConfig(default=0.5))
    save_realism(tmp_path / "m.realism.safetensors", blend, loaded.fingerprint)
    codec = Codec.from_pretrained(path, device="cpu")
    assert codec.default_realism == 0.5
    for k in keys[:3]:
        assert torch.allclose(codec.runner.blend.realism[k], blend.realism[k].half().float())
