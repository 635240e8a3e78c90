"""Reading and writing image files as uint8 tensors, with errors that name the file."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageReadError(ValueError):
    """A file that is missing, not an image, or corrupt."""


_PIXEL_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _no_pixel_limit(image_module):
    """Lift Pillow's decompression-bomb guard while reading: huge images are what tiling is for."""
    with _PIXEL_LIMIT_LOCK:
        saved, image_module.MAX_IMAGE_PIXELS = image_module.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            image_module.MAX_IMAGE_PIXELS = saved


def _grey16_to_8(values: np.ndarray, path: Path) -> np.ndarray:
    """16-bit grey levels -> 8-bit, rounded (v * 255 / 65535)."""
    values = values.astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ImageReadError(f"cannot read {path}: integer image with values outside 0..65535")
    return ((values * 255 + 32767) // 65535).astype(np.uint8)


def read_image(path: str | os.PathLike, mode: str = "RGB") -> torch.Tensor:
    """Read an image file as a ``(C, H, W)`` uint8 tensor.

    ``mode="RGB"`` gives 3 channels (grey images are repeated, as the
    evaluation protocol asks); ``mode="keep"`` keeps grey images as 1 channel.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image not found: {path}")
    try:
        with _no_pixel_limit(Image), Image.open(path) as img:
            img.load()
            if img.mode == "F":
                raise ImageReadError(f"cannot read {path}: floating-point images are not supported; save it with 8 or 16 bits")
            if img.mode.startswith("I"):  # 16-bit grey ("I;16*"; "I" is how Pillow opens some 16-bit files)
                array = _grey16_to_8(np.asarray(img), path)
            else:
                grey = img.mode in ("L", "1", "LA")
                array = np.asarray(img.convert("L" if grey and mode == "keep" else "RGB"), dtype=np.uint8)
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"cannot read {path}: not an image or a corrupt file ({exc})") from None
    if array.ndim == 2:
        array = array[:, :, None] if mode == "keep" else np.repeat(array[:, :, None], 3, axis=2)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def write_image(image: torch.Tensor, path: str | os.PathLike) -> None:
    """Write a ``(C, H, W)`` uint8 tensor (C = 1 or 3); the format follows the suffix.

    Written to a temporary file first and renamed, so a failure never leaves
    half an image behind.
    """
    from PIL import Image

    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"write_image expects a (1 or 3, H, W) uint8 tensor, got {image.dtype} {tuple(image.shape)}")
    path = Path(path)
    array = image.permute(1, 2, 0).cpu().numpy()
    pil = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        pil.save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def list_images(folder: str | os.PathLike, what: str = "folder") -> list[Path]:
    """Image files directly in ``folder``, sorted by name.

    Raises FileNotFoundError naming ``what`` (for example "training data
    folder") when the folder is missing or holds no images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} not found: {folder}")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"no images in {what} {folder}")
    return images
