"""RGB <-> YCbCr exactly as MATLAB's ``rgb2ycbcr`` / ``ycbcr2rgb`` (ITU-R BT.601).

The one place in the project that converts colour. Values are floats on the
[0, 1] scale: Y lies in [16/255, 235/255], Cb and Cr in [16/255, 240/255].
Tensors are ``(..., 3, H, W)`` (channel dimension third from last), on any
device; ``uint8`` inputs are read as ``value / 255``.
"""

from __future__ import annotations

import torch

# MATLAB rgb2ycbcr: offset + M @ rgb, with rgb in [0, 1] and the result on the
# 0-255 scale. We divide by 255 so that everything stays on the [0, 1] scale.
_OFFSET = (16.0, 128.0, 128.0)
_MATRIX = (
    (65.481, 128.553, 24.966),
    (-37.797, -74.203, 112.0),
    (112.0, -93.786, -18.214),
)


def _as_float(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return x.to(torch.float32) / 255.0
    if not x.is_floating_point():
        raise TypeError(f"colour conversion expects a float or uint8 tensor, got {x.dtype}")
    return x


def _check_channels(x: torch.Tensor, what: str) -> None:
    if x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(f"{what} expects a tensor of shape (..., 3, H, W), got {tuple(x.shape)}")


def _apply(x: torch.Tensor, matrix: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    # einsum over the channel axis keeps any leading batch dimensions.
    out = torch.einsum("ij,...jhw->...ihw", matrix, x)
    return out + offset.view(3, 1, 1)


def _forward_params(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    matrix = torch.tensor(_MATRIX, dtype=torch.float64) / 255.0
    offset = torch.tensor(_OFFSET, dtype=torch.float64) / 255.0
    return matrix.to(x.device, x.dtype), offset.to(x.device, x.dtype)


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """Convert RGB ``(..., 3, H, W)`` to YCbCr, both on the [0, 1] scale."""
    _check_channels(rgb, "rgb_to_ycbcr")
    rgb = _as_float(rgb)
    matrix, offset = _forward_params(rgb)
    return _apply(rgb, matrix, offset)


def rgb_to_y(rgb: torch.Tensor) -> torch.Tensor:
    """Luma only: ``(..., 3, H, W)`` RGB -> ``(..., 1, H, W)`` Y on the [0, 1] scale."""
    return rgb_to_ycbcr(rgb)[..., :1, :, :]


def ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr`; the result is not clamped."""
    _check_channels(ycbcr, "ycbcr_to_rgb")
    ycbcr = _as_float(ycbcr)
    matrix, offset = _forward_params(ycbcr)
    inverse = torch.linalg.inv(matrix.to(torch.float64)).to(ycbcr.dtype)
    return torch.einsum("ij,...jhw->...ihw", inverse, ycbcr - offset.view(3, 1, 1))
