import math

import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from espcn_fast.metrics import psnr, ssim


def _pair(seed=0, shape=(40, 52)):
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(shape, generator=g, dtype=torch.float64) * 219 + 16
    sr = (hr + torch.randn(shape, generator=g, dtype=torch.float64) * 5).clamp(0, 255)
    return sr, hr


@pytest.mark.parametrize("shave", [0, 2, 3, 4])
def test_psnr_matches_scikit_image(shave):
    sr, hr = _pair(shave)
    s = slice(shave, -shave) if shave else slice(None)
    expected = peak_signal_noise_ratio(hr.numpy()[s, s], sr.numpy()[s, s], data_range=255)
    assert psnr(sr, hr, shave=shave) == pytest.approx(expected, abs=1e-9)


def test_psnr_by_hand():
    hr = torch.zeros(4, 4, dtype=torch.float64)
    sr = hr.clone()
    sr[0, 0] = 16.0  # MSE = 256 / 16 = 16
    assert psnr(sr, hr) == pytest.approx(10 * math.log10(255**2 / 16))
    assert psnr(hr, hr) == math.inf


@pytest.mark.parametrize("shave", [0, 3])
def test_ssim_matches_scikit_image(shave):
    sr, hr = _pair(10 + shave)
    s = slice(shave, -shave) if shave else slice(None)
    expected = structural_similarity(
        hr.numpy()[s, s],
        sr.numpy()[s, s],
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(sr, hr, shave=shave) == pytest.approx(expected, abs=1e-7)


def test_ssim_of_identical_images_is_one():
    _, hr = _pair(3)
    assert ssim(hr, hr) == pytest.approx(1.0)


def test_errors():
    a = torch.zeros(20, 20)
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(a, torch.zeros(20, 21))
    with pytest.raises(ValueError, match="nothing left"):
        psnr(torch.zeros(6, 6), torch.zeros(6, 6), shave=3)
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.zeros(12, 12), torch.zeros(12, 12), shave=2)
