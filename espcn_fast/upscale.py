"""The image data path: 8-bit image -> YCbCr -> network on Y, bicubic Cb/Cr -> 8-bit image."""

from __future__ import annotations

import torch

from .color import rgb_to_ycbcr, ycbcr_to_rgb
from .memory_budget import budget_bytes, default_budget, plan_tile
from .model import SuperResolver
from .quantize import to_uint8_
from .resize import imresize
from .tiling import run_tiled
from .validation import check_model_scale

# The tile (LR pixels) tried first when a whole image does not fit on the GPU;
# halved on each further out-of-memory error down to the last (also the CLI's
# smallest --tile: below it the 4-pixel halo is most of the work).
OOM_FIRST_TILE = 1024
OOM_LAST_TILE = 16


@torch.no_grad()
def upscale_image(
    image: torch.Tensor,
    model: SuperResolver,
    scale: int,
    device: torch.device | str | None = None,
    tile: int | None = None,
    max_memory: int | None = None,
) -> torch.Tensor:
    """Super-resolve a ``(C, H, W)`` uint8 image (C = 3 colour, C = 1 grey; 4 and 2 with alpha last) by ``scale``.

    Y goes through ``model`` (LR Y ``(1, 1, H, W)`` -> ``(1, 1, H*r, W*r)``,
    floats on [0, 1]); Cb, Cr and alpha are upscaled with the MATLAB-compatible
    bicubic resize. Returns ``(C, H*r, W*r)`` uint8 on ``image``'s device.

    ``tile`` (LR pixels) runs the whole path tile by tile with a 4-pixel halo
    (see :mod:`espcn_fast.tiling`): the same pixels, with only one tile on
    ``device`` at a time. On a GPU, an image that does not fit is retried in
    tiles of ``OOM_FIRST_TILE``, then halves of that.

    ``max_memory`` (bytes, or a size such as ``"4G"``; default half the memory available at the call) bounds
    the host memory the upscale and the later write use: on the CPU the image is
    tiled by itself when the whole would pass it, and in smaller tiles than ``tile``
    when that would (see :mod:`espcn_fast.memory_budget`); an image whose output alone would pass it
    raises :class:`~espcn_fast.memory_budget.MemoryBudgetError` before any work.
    """
    if image.dtype != torch.uint8 or image.dim() != 3 or not 1 <= image.shape[0] <= 4:
        raise ValueError(f"upscale_image expects a (1 to 4, H, W) uint8 image, got {image.dtype} {tuple(image.shape)}")
    check_model_scale(model, scale, "upscale_image")
    device = torch.device(device) if device is not None else image.device
    budget = budget_bytes(max_memory) if max_memory is not None else default_budget()
    planned = plan_tile(image.shape[0], image.shape[1], image.shape[2], scale, budget)
    if planned is not None and device.type == "cpu":  # (a GPU holds the intermediates: its own fallback below)
        tile = planned if tile is None else min(tile, planned)  # a larger tile asked for would pass the budget

    def tiled(size: int) -> torch.Tensor:
        return run_tiled(lambda crop: _upscale(crop, model, device), image, scale, size, device=device)

    if tile is not None:
        return tiled(tile)
    try:
        return _upscale(image, model, device).to(image.device)
    except torch.cuda.OutOfMemoryError:
        pass
    tile = OOM_FIRST_TILE
    while True:
        torch.cuda.empty_cache()
        try:
            return tiled(tile)
        except torch.cuda.OutOfMemoryError:
            if tile // 2 < OOM_LAST_TILE:
                raise
            tile //= 2


def _upscale(image: torch.Tensor, model: SuperResolver, device: torch.device) -> torch.Tensor:
    """The untiled path: 8-bit image -> YCbCr -> network on Y, bicubic Cb/Cr -> 8-bit image, on ``device``."""
    if image.shape[0] in (2, 4):  # alpha last: resized as chroma is, so tiles stay exact (2 of the 4 halo pixels)
        colour = _upscale(image[:-1], model, device)
        return torch.cat([colour, imresize(image[-1:].to(device), size=tuple(colour.shape[-2:]))])
    grey = image.shape[0] == 1
    rgb = image.to(device).expand(3, -1, -1)
    ycbcr = rgb_to_ycbcr(rgb)
    sr_y = model(ycbcr[None, :1])[0].clamp(0, 1).to(ycbcr.dtype)
    if grey:
        # Cb = Cr = 128 for R = G = B; no need to resize a constant.
        cbcr = torch.full((2, *sr_y.shape[-2:]), 128.0 / 255.0, dtype=sr_y.dtype, device=device)
    else:
        cbcr = imresize(ycbcr[1:], size=tuple(sr_y.shape[-2:]))
    out = ycbcr_to_rgb(torch.cat([sr_y, cbcr]))
    out = to_uint8_(out)
    return out[:1] if grey else out
