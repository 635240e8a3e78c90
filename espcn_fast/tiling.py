"""Images too large for one pass: run a super-resolver on overlapping LR tiles and stitch.

ESPCN's output pixel depends on the LR pixels within 4 of it (5x5, 3x3, 3x3
kernels), so a tile cut with a 4-pixel halo (``HALO``) computes its interior
exactly as the whole image would: at the image's edges the tile meets the
same zero padding, elsewhere real pixels. Tiles start at even LR offsets, so
the kernels' 2x2 Winograd blocks line up as in the untiled run and the
stitched result is bit-identical to it (tested at tile edges and corners).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

HALO = 4  # LR pixels of context an ESPCN output pixel needs (2 + 1 + 1)
MIN_TILE = 2  # tiles start at even LR pixels


def check_tile(tile: int) -> None:
    """A clear error for a tile size the stitching cannot use."""
    if tile < MIN_TILE:
        raise ValueError(f"tile must be >= {MIN_TILE} LR pixels, got {tile}")


def tiles(h: int, w: int, tile: int, halo: int = HALO) -> Iterator[tuple[slice, slice, slice, slice]]:
    """For each tile: the LR crop (rows, cols) to compute and the LR region (rows, cols) it owns."""
    check_tile(tile)
    tile -= tile % 2  # even origins: the kernels' 2x2 blocks line up with the untiled run
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(h, y0 + tile), min(w, x0 + tile)
            crop = (slice(max(0, y0 - halo), min(h, y1 + halo)), slice(max(0, x0 - halo), min(w, x1 + halo)))
            yield crop[0], crop[1], slice(y0, y1), slice(x0, x1)


def run_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scale: int,
    tile: int,
    out: torch.Tensor | None = None,
    halo: int = HALO,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``fn`` (LR ``(..., h, w)`` -> HR ``(..., h*scale, w*scale)``) over tiles of ``x``, stitched.

    ``x`` may stay on the CPU while each crop runs on ``device``; the result
    goes into ``out`` (allocated on ``x``'s device with ``fn``'s dtype when not
    given), so only one tile is on the device at a time.
    """
    h, w = x.shape[-2:]
    for rows, cols, own_rows, own_cols in tiles(h, w, tile, halo):
        crop = x[..., rows, cols]
        hr = fn(crop if device is None else crop.to(device))
        expected = (crop.shape[-2] * scale, crop.shape[-1] * scale)
        if tuple(hr.shape[-2:]) != expected:  # a model of another scale would stitch wrong crops
            raise ValueError(
                f"run_tiled: a {crop.shape[-2]}x{crop.shape[-1]} tile came back "
                f"{hr.shape[-2]}x{hr.shape[-1]}, not x{scale} ({expected[0]}x{expected[1]})"
            )
        if out is None:
            out = torch.empty((*x.shape[:-2], h * scale, w * scale), dtype=hr.dtype, device=x.device)
        top, left = (own_rows.start - rows.start) * scale, (own_cols.start - cols.start) * scale
        th, tw = (own_rows.stop - own_rows.start) * scale, (own_cols.stop - own_cols.start) * scale
        out[..., own_rows.start * scale : own_rows.stop * scale, own_cols.start * scale : own_cols.stop * scale] = hr[
            ..., top : top + th, left : left + tw
        ].to(out.device)
    if out is None:  # an empty image: no tiles
        out = torch.empty((*x.shape[:-2], h * scale, w * scale), dtype=x.dtype, device=x.device)
    return out
