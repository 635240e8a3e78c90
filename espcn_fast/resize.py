"""MATLAB-compatible bicubic ``imresize`` in torch: the one resize of the project.

(Except the video pipeline's chroma: see ``espcn_fast.video._upscale_chroma``.)

It reproduces MATLAB's algorithm: the cubic kernel with a = -0.5, widened by
1/scale when shrinking (antialiasing), symmetric padding at the borders, the
height resized before the width, and for ``uint8`` images a round to uint8
after *each* pass, as MATLAB keeps the uint8 class between passes. The
standard Set5/Set14 LR images were made this way.

Vectorised (one matrix product per pass), batched over any
leading dimensions, and it runs on whichever device the tensor is on.
"""

from __future__ import annotations

import functools
import math

import torch

from .quantize import round_255


def _cubic(x: torch.Tensor) -> torch.Tensor:
    ax = x.abs()
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def _contributions(
    in_len: int, out_len: int, scale: float, antialias: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices (out_len, P) and normalised weights (out_len, P) along one axis.

    Always float64: the weights must match MATLAB's doubles so that values that
    land on x.5 round the same way.
    """
    kernel_width = 4.0
    stretch = 1.0
    if scale < 1 and antialias:
        kernel_width /= scale
        stretch = scale
    x = torch.arange(1, out_len + 1, dtype=torch.float64, device=device)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centre in input coordinates (1-based)
    left = torch.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left.unsqueeze(1) + torch.arange(taps, dtype=torch.float64, device=device)
    weights = stretch * _cubic(stretch * (u.unsqueeze(1) - indices))
    weights = weights / weights.sum(dim=1, keepdim=True)
    # Symmetric padding: mirror the index into [1, in_len], repeating the edge pixel.
    period = 2 * in_len
    idx = torch.remainder(indices.long() - 1, period)
    idx = torch.where(idx < in_len, idx, period - 1 - idx)
    # Drop tap columns that are zero for every output pixel, as MATLAB does.
    keep = (weights != 0).any(dim=0)
    return idx[:, keep], weights[:, keep]


@functools.lru_cache(maxsize=64)
def _matrix(in_len: int, out_len: int, scale: float, antialias: bool, device: torch.device) -> torch.Tensor:
    """The resize along one axis as a dense (out_len, in_len) float64 matrix.

    A matrix product is many times faster than a gather for the small images
    of training; mirrored taps that land on the same pixel add their weights.
    """
    idx, weights = _contributions(in_len, out_len, scale, antialias, device)
    rows = torch.arange(out_len, device=device).unsqueeze(1).expand_as(idx)
    matrix = torch.zeros(out_len, in_len, dtype=torch.float64, device=device)
    return matrix.index_put_((rows, idx), weights, accumulate=True)


def _resize_axis(
    x: torch.Tensor, dim: int, out_len: int, scale: float, antialias: bool
) -> torch.Tensor:
    """Resize along ``dim`` (-2: height, -1: width)."""
    matrix = _matrix(x.shape[dim], out_len, scale, antialias, x.device).to(x.dtype)
    if dim == -2:
        return torch.matmul(matrix, x)
    return torch.matmul(x, matrix.T)


def imresize(
    image: torch.Tensor,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
) -> torch.Tensor:
    """Bicubic resize of ``(..., H, W)`` exactly as MATLAB's ``imresize``.

    Give either ``scale`` (the output is ``ceil(H * scale) x ceil(W * scale)``)
    or ``size = (out_h, out_w)``. ``uint8`` images are computed in float64,
    rounded to uint8 after each pass and returned as uint8; float images are
    computed and returned in their own dtype, neither rounded nor clamped.
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"imresize expects a torch.Tensor, got {type(image).__name__}")
    if image.dim() < 2:
        raise ValueError(f"imresize expects a tensor of shape (..., H, W), got {tuple(image.shape)}")
    if image.shape[-1] == 0 or image.shape[-2] == 0:
        raise ValueError(f"imresize got an empty image of shape {tuple(image.shape)}")
    is_uint8 = image.dtype == torch.uint8
    if not is_uint8 and not image.is_floating_point():
        raise TypeError(f"imresize expects a uint8 or floating-point tensor, got {image.dtype}")
    in_h, in_w = image.shape[-2], image.shape[-1]
    if (scale is None) == (size is None):
        raise ValueError("imresize needs exactly one of scale or size")
    if scale is not None:
        if not scale > 0:
            raise ValueError(f"imresize scale must be positive, got {scale}")
        scale_h = scale_w = float(scale)
        out_h, out_w = math.ceil(in_h * scale_h), math.ceil(in_w * scale_w)
    else:
        out_h, out_w = (int(s) for s in size)  # type: ignore[union-attr]
        if out_h < 1 or out_w < 1:
            raise ValueError(f"imresize size must be positive, got {size}")
        scale_h, scale_w = out_h / in_h, out_w / in_w

    x = image.to(torch.float64) if is_uint8 else image
    # MATLAB resizes the dimension with the smaller scale first; ties go to the height.
    passes = [(-2, out_h, scale_h), (-1, out_w, scale_w)]
    if scale_w < scale_h:
        passes.reverse()
    for dim, out_len, s in passes:
        x = _resize_axis(x, dim, out_len, s, antialias)
        if is_uint8:
            x = round_255(x)
    return x.to(torch.uint8) if is_uint8 else x


def modcrop(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop ``(..., H, W)`` at the bottom and right to multiples of ``scale``."""
    h, w = image.shape[-2], image.shape[-1]
    return image[..., : h - h % scale, : w - w % scale]
