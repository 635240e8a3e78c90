"""PSNR and SSIM on the Y channel, as SR papers compute them.

Inputs are Y images ``(..., H, W)`` on the 0-255 scale; ``shave`` pixels are
removed from every border first (the protocol uses ``shave = scale``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _prepare(sr: torch.Tensor, hr: torch.Tensor, shave: int) -> tuple[torch.Tensor, torch.Tensor]:
    if sr.shape != hr.shape:
        raise ValueError(f"images to compare differ in shape: {tuple(sr.shape)} vs {tuple(hr.shape)}")
    if shave < 0:
        raise ValueError(f"shave must be >= 0, got {shave}")
    if shave:
        sr = sr[..., shave:-shave, shave:-shave]
        hr = hr[..., shave:-shave, shave:-shave]
    if sr.numel() == 0:
        raise ValueError(f"nothing left to compare after shaving {shave} px from shape {tuple(hr.shape)}")
    return sr.to(torch.float64), hr.to(torch.float64)


def psnr(sr: torch.Tensor, hr: torch.Tensor, shave: int = 0, data_range: float = 255.0) -> float:
    """``10 log10(range^2 / MSE)`` over the whole (shaved) image; inf when equal."""
    sr, hr = _prepare(sr, hr, shave)
    mse = torch.mean((sr - hr) ** 2).item()
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(sr: torch.Tensor, hr: torch.Tensor, shave: int = 0, data_range: float = 255.0) -> float:
    """Mean SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03.

    The window is applied where it fits inside the (shaved) image, as in the
    original MATLAB ``ssim_index`` and scikit-image with ``gaussian_weights``.
    """
    sr, hr = _prepare(sr, hr, shave)
    if sr.shape[-1] < 11 or sr.shape[-2] < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after the shave, got {tuple(sr.shape[-2:])}")
    window = _gaussian_window().to(sr.device)[None, None]
    x = sr.reshape(-1, 1, *sr.shape[-2:])
    y = hr.reshape(-1, 1, *hr.shape[-2:])
    mu_x, mu_y = F.conv2d(x, window), F.conv2d(y, window)
    var_x = F.conv2d(x * x, window) - mu_x**2
    var_y = F.conv2d(y * y, window) - mu_y**2
    cov = F.conv2d(x * y, window) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (num / den).mean().item()
