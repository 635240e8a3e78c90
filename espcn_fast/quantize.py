"""Rounding to 8 bits, as MATLAB's ``im2uint8``: clipped, then half away from zero.

The one place the project rounds pixels: the metrics (SR output as an 8-bit
image), the resize (uint8 after each pass), and the images and videos it writes
(but for CPU video chroma, which torch's uint8 bicubic rounds after each pass).
"""

from __future__ import annotations

import torch


def round_255(x: torch.Tensor) -> torch.Tensor:
    """Values on the 0-255 scale -> clipped, rounded floats (same dtype)."""
    return torch.floor(x.clamp(0, 255) + 0.5)  # >= 0 after the clamp: floor(x + 0.5) is half away from zero


def quantize(y: torch.Tensor) -> torch.Tensor:
    """Values on [0, 1] -> the 0-255 floats an 8-bit image would hold."""
    return round_255(y * 255.0)


def to_uint8_(y: torch.Tensor) -> torch.Tensor:
    """Values on [0, 1] -> uint8, as :func:`quantize`, computed in ``y`` (which it overwrites).

    For frame-sized tensors, where the temporaries would cost as much as the rounding.
    """
    return y.clamp_(0, 1).mul_(255.0).add_(0.5).to(torch.uint8)  # truncation = floor for >= 0
