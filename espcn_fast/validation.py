"""Input checks shared by every model and backend, with messages that name the problem."""

from __future__ import annotations

import torch


def check_image_batch(x: object, channels: int, where: str = "ESPCN") -> torch.Tensor:
    """Check that ``x`` is a float ``(N, channels, H, W)`` tensor with H, W >= 1.

    An empty batch (N == 0) is allowed; an image with no pixels is not.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where} expects a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{where} expects a floating-point tensor (images scaled to [0, 1]), got dtype "
            f"{x.dtype}; convert with x.float() / 255 for 8-bit images"
        )
    if x.dim() != 4:
        raise ValueError(f"{where} expects a 4-D tensor (N, {channels}, H, W), got {x.dim()}-D shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(
            f"{where} expects {channels} input channel(s) (the Y channel), got {x.shape[1]} "
            f"in shape {tuple(x.shape)}; convert RGB with espcn_fast.color.rgb_to_y"
        )
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{where} got an empty image: shape {tuple(x.shape)} has no pixels")
    return x


def check_scale(scale: object) -> int:
    """The upscaling factor must be an integer >= 1."""
    if isinstance(scale, bool) or not isinstance(scale, int):
        raise TypeError(f"scale must be an integer, got {scale!r}")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    return scale


def check_model_scale(model: object, scale: int, where: str) -> None:
    """A model that says its scale (ESPCN, FastESPCN) must upscale by ``scale``: found before any
    work, not as wrongly stitched tiles or a shape error in the first video frame."""
    model_scale = getattr(model, "scale", scale)
    if model_scale != scale:
        raise ValueError(f"{where}: scale {scale} but the model upscales x{model_scale}")
