"""MATLAB-compatible bicubic ``imresize`` in torch: the one resize of the project.

(Except the video pipeline's chroma: see ``espcn_fast.video._upscale_chroma``.)

It reproduces MATLAB's algorithm: the cubic kernel with a = -0.5, widened by
1/scale when shrinking (antialiasing), symmetric padding at the borders, the
height resized before the width, and for ``uint8`` images a round to uint8
after *each* pass, as MATLAB keeps the uint8 class between passes. The
standard Set5/Set14 LR images were made this way.

Vectorised (one sweep of the image per kernel tap and pass), batched over any leading
dimensions, and it runs on whichever device the tensor is on. An integer
upscale of a tile (with 2 pixels of margin) gives exactly the pixels of the
whole image's upscale, which tiled super-resolution relies on.
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


@functools.lru_cache(maxsize=16)
def _phases(scale: int) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[float, ...], ...]]:
    """An integer upscale's taps, the same for every LR pixel: for each phase (which of the ``scale``
    outputs of an LR pixel), the source offsets from that pixel (0-based) and their normalised weights.

    MATLAB's output centre ``u = x / scale + 0.5 * (1 - 1 / scale)`` is computed for the first
    ``scale`` outputs; the others are those shifted by whole LR pixels. Taken apart this way, every
    output of a phase gets bit-identical weights wherever it lies, so a tile of an image resizes
    exactly as the whole image does.
    """
    x = torch.arange(1, scale + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    start = torch.floor(u - 2.0)
    taps = start.unsqueeze(1) + torch.arange(6, dtype=torch.float64)  # 1-based source pixels
    weights = _cubic(u.unsqueeze(1) - taps)
    weights = weights / weights.sum(dim=1, keepdim=True)
    keep = (weights != 0).any(dim=0)  # tap columns zero for every phase are dropped, as MATLAB does
    offsets = (taps[:, keep] - 1).long()
    return tuple(map(tuple, offsets.tolist())), tuple(map(tuple, weights[:, keep].tolist()))


def _mirror(indices: torch.Tensor, length: int) -> torch.Tensor:
    """Symmetric padding: 0-based indices mirrored into [0, length), the edge pixel repeated."""
    period = 2 * length
    idx = torch.remainder(indices, period)
    return torch.where(idx < length, idx, period - 1 - idx)


@functools.lru_cache(maxsize=64)
def _contributions(
    in_len: int, out_len: int, scale: float, antialias: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices (out_len, P) and normalised weights (out_len, P) along one axis.

    Always float64: the weights must match MATLAB's doubles so that values that
    land on x.5 round the same way.
    """
    if scale >= 1 and float(scale).is_integer():
        offsets, weights = (torch.tensor(t, device=device) for t in _phases(int(scale)))
        x = torch.arange(out_len, device=device)
        idx = torch.div(x, int(scale), rounding_mode="floor").unsqueeze(1) + offsets[x % int(scale)]
        return _mirror(idx, in_len), weights[x % int(scale)]
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
    idx = _mirror(indices.long() - 1, in_len)
    # Drop tap columns that are zero for every output pixel, as MATLAB does.
    keep = (weights != 0).any(dim=0)
    return idx[:, keep].contiguous(), weights[:, keep].contiguous()


def _resize_axis(x: torch.Tensor, dim: int, out_len: int, scale: float, antialias: bool) -> torch.Tensor:
    """Resize along ``dim`` (-2: height, -1: width).

    Tap by tap, in a fixed order, with separate multiplies and adds: each
    output is the same sum of the same products whatever the image's size
    (a matrix product's blocking would change the order with the size).
    """
    in_len = x.shape[dim]
    if scale >= 1 and float(scale).is_integer() and out_len == in_len * int(scale):
        return _upscale_axis(x, dim, int(scale))
    idx, weights = _contributions(in_len, out_len, scale, antialias, x.device)
    weights = weights.to(x.dtype)
    out = None
    for k in range(idx.shape[1]):
        w = weights[:, k : k + 1] if dim == -2 else weights[:, k]
        term = x.index_select(dim, idx[:, k]) * w
        out = term if out is None else out.add_(term)
    return out


def _upscale_axis(x: torch.Tensor, dim: int, scale: int) -> torch.Tensor:
    """An integer upscale along ``dim``, phase by phase: the input mirrored at its ends once, then
    each phase's taps read as shifted views of it (no gathers), in the order of :func:`_phases`."""
    offsets, weights = _phases(scale)
    n = x.shape[dim]
    low = max(0, -min(min(o) for o in offsets))
    high = max(0, max(max(o) for o in offsets))
    padded = x.index_select(dim, _mirror(torch.arange(-low, n + high, device=x.device), n))
    phases = []
    for phase_offsets, phase_weights in zip(offsets, weights):
        acc = None
        for offset, weight in zip(phase_offsets, phase_weights):
            term = padded.narrow(dim, low + offset, n) * weight
            acc = term if acc is None else acc.add_(term)
        phases.append(acc)
    # Interleaved: (..., n, scale, W) -> (..., n * scale, W), or (..., H, n, scale) -> (..., H, n * scale).
    if dim == -2:
        return torch.stack(phases, dim=-2).flatten(-3, -2)
    return torch.stack(phases, dim=-1).flatten(-2, -1)


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
