"""Metrics: exact values on known inputs, and LPIPS-/KID-Squeeze wired to their backbone. The wiring
runs on a random-init backbone (``squeezenet_path``); the same checks on the real ImageNet weights
in ../shared are marked ``slow``."""

import pytest
import torch

from vqcodec.metrics import HAARPSI_MIN_SIDE, haarpsi, lpips_squeeze, ms_ssim, psnr, squeezenet_backbone_path


def test_psnr_known_value():
    x = torch.zeros(1, 3, 8, 8)
    y = torch.full((1, 3, 8, 8), 0.1)
    assert float(psnr(x, y)[0]) == pytest.approx(20.0, abs=1e-4)


def test_ms_ssim_identity_and_small_images():
    x = torch.rand(1, 3, 192, 192)
    assert float(ms_ssim(x, x)[0]) == pytest.approx(1.0, abs=1e-5)
    assert torch.isnan(ms_ssim(x[..., :64, :64], x[..., :64, :64])).all()


def test_haarpsi_is_one_for_identical_images_and_falls_with_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 96, generator=g)
    x = torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # some structure for the wavelets, not only noise
    noise = torch.randn(x.shape, generator=g)
    assert haarpsi(x, x).shape == (2,)
    assert torch.allclose(haarpsi(x, x), torch.ones(2), atol=1e-5)
    scores = [haarpsi(x, (x + s * noise).clamp(0, 1)) for s in (0.01, 0.03, 0.1, 0.3)]
    assert all((a > b).all() for a, b in zip(scores, scores[1:]))
    assert (scores[0] < 1).all() and (scores[-1] < 0.6).all()
    blurred = torch.nn.functional.avg_pool2d(x, 5, 1, 2)
    assert (haarpsi(x, blurred) < 1 - 1e-3).all()


def test_haarpsi_refuses_small_images():
    x = torch.rand(1, 3, HAARPSI_MIN_SIDE, 40)
    assert float(haarpsi(x, x)[0]) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="at least 16"):
        haarpsi(x[..., : HAARPSI_MIN_SIDE - 1, :], x[..., : HAARPSI_MIN_SIDE - 1, :])
    with pytest.raises(ValueError, match="one shape"):
        haarpsi(x, x[..., :20])


def test_missing_backbone_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="SqueezeNet"):
        squeezenet_backbone_path(tmp_path / "nope.pth")


@pytest.fixture(params=["random", pytest.param("shared", marks=pytest.mark.slow)])
def backbone(request, squeezenet_path):
    """The random-init stand-in, and (marked slow) the real ImageNet weights from ../shared."""
    if request.param == "random":
        return squeezenet_path
    try:
        return squeezenet_backbone_path()
    except FileNotFoundError:
        pytest.skip("../shared/weights/squeezenet1_1 not present")


def test_random_backbone_is_the_same_every_time(squeezenet_path, tmp_path):
    from vqcodec.testing.models import random_squeezenet

    state = torch.load(squeezenet_path, weights_only=True)
    again = torch.load(random_squeezenet(tmp_path / "again.pth"), weights_only=True)
    assert state.keys() == again.keys() and all(torch.equal(state[k], again[k]) for k in state)


def test_lpips_squeeze_matches_the_lpips_package(backbone, tmp_path, monkeypatch):
    """Our loader must give exactly what lpips gives with the same trunk in torchvision's cache."""
    import shutil

    import lpips

    hub = tmp_path / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    shutil.copy(backbone, hub / "squeezenet1_1-b8a52dc0.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = lpips.LPIPS(net="squeeze", verbose=False)
    ours = lpips_squeeze(backbone)
    torch.manual_seed(0)
    a = torch.rand(2, 3, 64, 64)
    b = (a + 0.1 * torch.randn_like(a)).clamp(0, 1)
    with torch.no_grad():
        assert torch.allclose(ours(a, b), reference(a * 2 - 1, b * 2 - 1), atol=1e-6)
        assert float(ours(a, a).abs().max()) == 0.0
        assert float(ours(a, b).mean()) > 0.005


def test_kid_separates_distributions():
    from vqcodec.metrics import kid

    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 16, generator=g)
    b = torch.randn(200, 16, generator=g)
    shifted = torch.randn(200, 16, generator=g) + 1.0
    assert abs(kid(a, b)) < 0.05
    assert kid(a, shifted) > 10 * abs(kid(a, b))


def test_patches_cover_the_image():
    from vqcodec.metrics import patches

    x = torch.rand(1, 3, 512, 768)
    p = patches(x)
    assert p.shape == (6, 3, 256, 256)
    assert torch.equal(p[4], x[0, :, 256:512, 256:512])
    assert patches(x[..., :100, :100]).shape[0] == 0


def test_squeezenet_features_load_the_backbone(backbone):
    from vqcodec.metrics import squeezenet_features

    feats = squeezenet_features(backbone)
    x = torch.rand(2, 3, 128, 128)
    f = feats(x)
    assert f.shape == (2, 512) and torch.isfinite(f).all() and float(f.abs().sum()) > 0
