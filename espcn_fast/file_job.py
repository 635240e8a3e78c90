"""One image file through the whole path, read -> upscale -> write, with what went wrong as one line:
the unit of work of ``espcn-fast upscale``, on one machine and on a cluster."""

from __future__ import annotations

from pathlib import Path

import torch

from .image_io import ImageReadError, read_image_and_profile, write_image
from .memory_budget import MemoryBudgetError
from .model import SuperResolver
from .upscale import upscale_image


class FileJobError(Exception):
    """An image that could not be done, and why, in one line; ``kind`` is "skipped" (the input could
    not be read) or "failed" (too large for memory, or the output could not be written)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (Python's, the CPU allocator's or the GPU's)."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in str(exc) or "out of memory" in str(exc))


def upscale_file(
    src: Path,
    dst: Path,
    model: SuperResolver,
    scale: int,
    device: torch.device | str,
    tile: int | None = None,
    max_memory: int | None = None,
) -> tuple[int, int]:
    """Upscale the image file ``src`` into ``dst`` (written whole or not at all); returns the output's
    (width, height). Raises :class:`FileJobError` for a problem of this file; anything else propagates."""
    try:
        image, icc_profile = read_image_and_profile(src, mode="keep")
    except ImageReadError as exc:
        raise FileJobError("skipped", str(exc)) from None
    try:
        result = upscale_image(image, model, scale, device, tile=tile, max_memory=max_memory)
    except MemoryBudgetError as exc:
        raise FileJobError("failed", f"{src}: {exc}") from None
    except (MemoryError, RuntimeError) as exc:  # one image too large for memory: skip it, go on
        if not out_of_memory(exc):
            raise
        raise FileJobError(
            "failed", f"{src} ({image.shape[2]}x{image.shape[1]}): out of memory; try --tile 512"
        ) from None
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        write_image(result.cpu(), dst, icc_profile=icc_profile)
    except OSError as exc:
        raise FileJobError("failed", f"cannot write {dst}: {exc.strerror or exc}") from None
    return result.shape[2], result.shape[1]
