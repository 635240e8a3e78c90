"""Reading and writing image files as uint8 tensors, with errors that name the file."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .atomic_write import replacing
from .png_stream import short_rows

if TYPE_CHECKING:
    import PIL.Image

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

# The most pixels a file may claim: 16384 x 16384 (268 MP), enough for a 16K
# frame (15360 x 8640) or a 12000 x 12000 scan, which tiling upscales in bounded
# memory. Pillow's default (179 MP) would refuse the scan, and no limit at all lets
# a 2 KB PNG claiming 60000 x 60000 allocate gigabytes before failing.
MAX_PIXELS = 16384 * 16384

# Formats that store an alpha channel; the others (JPEG, BMP, PPM/PGM) get the colour alone.
ALPHA_FORMATS = frozenset({"PNG", "TIFF", "WEBP"})

# Pillow's defaults (JPEG quality 75 with 4:2:0 chroma, WebP 80) would throw away
# much of the detail the network adds.
_SAVE_OPTIONS: dict[str, dict[str, int]] = {"JPEG": {"quality": 95, "subsampling": 0}, "WEBP": {"quality": 95}}

# An ICC profile's colour space (header bytes 16-20) for 1-4 channels: a profile
# that does not describe the channels read (CMYK made RGB, RGB read as grey) is dropped.
_ICC_SPACES = {1: b"GRAY", 2: b"GRAY", 3: b"RGB ", 4: b"RGB "}

# Reading a 16-bit rawmode in the other byte order makes Pillow keep the low byte of each sample.
_SWAPPED_16 = {"B": "L", "L": "B", "N": "L" if sys.byteorder == "big" else "B"}
_16_BIT = tuple(f";16{order}" for order in _SWAPPED_16)


class ImageReadError(ValueError):
    """A file that is missing, not an image, corrupt, or larger than ``MAX_PIXELS``."""


_PIXEL_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _no_pillow_limit(image_module):
    """Pillow's own decompression-bomb guard lifted while reading: read_image_and_profile applies
    ``MAX_PIXELS`` itself, from the header. The guard is a global, hence the lock; another thread's
    ``Image.open`` during a read sees no limit (no warnings filter is touched: that is not thread-safe)."""
    with _PIXEL_LIMIT_LOCK:
        saved, image_module.MAX_IMAGE_PIXELS = image_module.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            image_module.MAX_IMAGE_PIXELS = saved


def _to_8_bits(values: np.ndarray, path: Path) -> np.ndarray:
    """16-bit levels -> 8-bit, rounded (v * 255 / 65535): the one rounding for grey and colour."""
    if values.size and values.dtype.kind == "i" and (values.min() < 0 or values.max() > 65535):
        raise ImageReadError(f"cannot read {path}: integer image with values outside 0..65535")
    v = values.astype(np.uint32)  # one copy, worked in place: 65535 * 255 + 32767 fits
    v *= 255
    v += 32767
    v //= 65535
    return v.astype(np.uint8)


# Rows copied out of Pillow at a time: a few MB of working copies whatever the image's
# size, so that a read holds Pillow's decoded image and the result, and little else.
_BLOCK_BYTES = 1 << 22
_BLOCK_BYTES_PER_PIXEL = 16  # the widest working copy: 4 channels of uint32


def _low_bytes(img: PIL.Image.Image, path: Path) -> PIL.Image.Image | None:
    """The low bytes of a 16-bit colour image (Pillow decodes only the high ones), decoded; else None.

    Call before ``img`` is loaded. The file is decoded again with the byte
    order swapped, which undoes PNG filters and TIFF compression as the first
    decode does; a rawmode Pillow cannot swap keeps its high bytes.
    """
    from PIL import Image

    if img.mode not in ("RGB", "RGBA", "LA"):
        return None
    # Pillow's tile records are internals (named tuples since Pillow 11): whatever
    # this cannot read or rebuild, e.g. 16-bit grey + alpha (no swapped rawmode) or an
    # older Pillow, keeps the high bytes rather than failing the read.
    try:
        rawmodes = [t.args if isinstance(t.args, str) else t.args[0] for t in img.tile]
        if not rawmodes or not all(r[-4:] in _16_BIT for r in rawmodes):
            return None
        swapped = [r[:-1] + _SWAPPED_16[r[-1]] for r in rawmodes]
        low = Image.open(path)
        low.tile = [
            t._replace(args=r if isinstance(t.args, str) else (r, *t.args[1:])) for t, r in zip(img.tile, swapped)
        ]
        try:
            low.load()
        except Exception:
            low.close()  # the file it opened: not left for the garbage collector
            raise
        return low
    except Exception:  # noqa: BLE001  (any failure: the high bytes, as Pillow reads them)
        return None


def _orientation(img: PIL.Image.Image) -> int:
    """The EXIF orientation (1-8; 1 when there is none or it cannot be read)."""
    try:
        value = int(img.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001  (a broken EXIF block: the picture as stored)
        return 1
    return value if 1 <= value <= 8 else 1


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """A ``(C, H, W)`` array as EXIF ``orientation`` says to show it (views; 1 leaves it as stored)."""
    t = array.transpose(0, 2, 1)
    return {
        2: array[:, :, ::-1],
        3: array[:, ::-1, ::-1],
        4: array[:, ::-1, :],
        5: t,
        6: t[:, :, ::-1],
        7: t[:, ::-1, ::-1],
        8: t[:, ::-1, :],
    }.get(orientation, array)


def _copy_rows(out: np.ndarray, block_of: Callable[[tuple[int, int, int, int]], np.ndarray]) -> None:
    """Pixels into ``out`` ``(C, H, W)`` uint8, a block of rows at a time.

    ``block_of(box)`` gives the 8-bit pixels of a Pillow crop box as ``(rows, W)``
    or ``(rows, W, K)``; ``out`` may have fewer channels than a block (alpha
    dropped) or more (grey repeated into RGB).
    """
    _, height, width = out.shape
    step = max(1, _BLOCK_BYTES // max(1, width * _BLOCK_BYTES_PER_PIXEL))
    for y0 in range(0, height, step):
        box = (0, y0, width, min(height, y0 + step))
        block = block_of(box)
        block = (block[:, :, None] if block.ndim == 2 else block).transpose(2, 0, 1)
        out[:, box[1] : box[3]] = block[: out.shape[0]] if block.shape[0] >= out.shape[0] else block[:1]


def read_image(path: str | os.PathLike, mode: str = "RGB") -> torch.Tensor:
    """Read an image file as a ``(C, H, W)`` uint8 tensor, upright (EXIF orientation applied).

    ``mode="RGB"`` gives 3 channels (grey images are repeated, as the
    evaluation protocol asks; alpha is dropped); ``mode="keep"`` keeps grey
    images as 1 channel and alpha as a last channel (C = 1, 2, 3 or 4).
    16-bit images are rounded to 8 bits. Raises :class:`ImageReadError`.
    """
    return read_image_and_profile(path, mode)[0]


def read_image_and_profile(path: str | os.PathLike, mode: str = "RGB") -> tuple[torch.Tensor, bytes | None]:
    """:func:`read_image`, and the file's ICC profile (``None`` if it has none, or one for other channels).

    Pass the profile to :func:`write_image` so that the output shows the same colours.
    A read holds at most about twice the decoded image: Pillow's copy and the result.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image not found: {path}")
    try:
        with _no_pillow_limit(Image), Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:  # the header's claim, before anything is decoded
                raise ImageReadError(
                    f"cannot read {path}: it claims {img.width}x{img.height} = "
                    f"{img.width * img.height} pixels, over the limit of {MAX_PIXELS} "
                    "(espcn_fast.image_io.MAX_PIXELS)"
                )
            if img.format == "PNG":  # Pillow fills the rows of a stream cut short with zeros
                missing = short_rows(path)
                if missing is not None:
                    raise ImageReadError(f"cannot read {path}: the file is truncated ({missing})")
            icc = img.info.get("icc_profile")
            low = _low_bytes(img, path)  # reads img.tile, gone once loaded
            img.load()
            orientation = _orientation(img)  # (a PNG's EXIF may follow its pixels: read once loaded)
            if img.mode == "F":
                raise ImageReadError(
                    f"cannot read {path}: floating-point images are not supported; save it with 8 or 16 bits"
                )
            grey = img.mode in ("L", "1", "LA", "La") or img.mode.startswith("I")
            if low is not None:  # 16-bit colour: the alpha it has, no palette or key colour
                alpha = mode == "keep" and "A" in img.mode
            else:
                alpha = mode == "keep" and img.has_transparency_data and not img.mode.startswith("I")
            channels = (1 if grey and mode == "keep" else 3) + alpha
            out = np.empty((channels, img.height, img.width), np.uint8)
            if img.mode.startswith("I"):  # 16-bit grey ("I;16*"; "I" is how Pillow opens some 16-bit files)
                _copy_rows(out, lambda box: _to_8_bits(np.asarray(img.crop(box)), path))
            elif low is not None:
                with low:
                    _copy_rows(
                        out,
                        lambda box: _to_8_bits(
                            np.asarray(img.crop(box)).astype(np.uint16) << 8 | np.asarray(low.crop(box)), path
                        ),
                    )
            else:
                target = ("L" if grey else "RGB") + ("A" if alpha else "")  # grey is repeated into RGB as copied
                if img.mode != target:
                    img = img.convert(target)
                _copy_rows(out, lambda box: np.asarray(img.crop(box)))
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"cannot read {path}: not an image or a corrupt file ({exc})") from None
    if icc is not None and icc[16:20] != _ICC_SPACES[out.shape[0]]:
        icc = None
    oriented = _orient(out, orientation)
    if oriented is not out:
        oriented = np.ascontiguousarray(oriented)
        del out
    return torch.from_numpy(oriented), icc


def write_image(image: torch.Tensor, path: str | os.PathLike, icc_profile: bytes | None = None) -> None:
    """Write a ``(C, H, W)`` uint8 tensor (C = 1, 3, or 2 and 4 with alpha last); the format follows the suffix.

    Alpha is kept in PNG, TIFF and WebP (``ALPHA_FORMATS``) and dropped
    elsewhere; JPEG is written at quality 95 with full-resolution chroma.
    ``icc_profile`` (from :func:`read_image_and_profile`) is embedded when given.
    Written to a temporary file first and renamed, so a failure never leaves
    half an image behind.
    """
    from PIL import Image

    if image.dtype != torch.uint8 or image.dim() != 3 or not 1 <= image.shape[0] <= 4:
        raise ValueError(f"write_image expects a (1 to 4, H, W) uint8 tensor, got {image.dtype} {tuple(image.shape)}")
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    if image.shape[0] in (2, 4) and fmt not in ALPHA_FORMATS:
        image = image[:-1]
    # Each plane handed to Pillow as it lies in memory, then merged: one copy (Pillow's),
    # where an interleaved array would cost another of the whole output.
    planes = image.cpu().contiguous().numpy()
    height, width = planes.shape[1:]
    bands = [Image.frombuffer("L", (width, height), plane, "raw", "L", 0, 1) for plane in planes]
    pil = bands[0] if len(bands) == 1 else Image.merge({2: "LA", 3: "RGB", 4: "RGBA"}[len(bands)], bands)
    options: dict[str, object] = dict(_SAVE_OPTIONS.get(fmt, {}))
    if icc_profile is not None:
        options["icc_profile"] = icc_profile
    with replacing(path) as tmp:
        pil.save(tmp, format=fmt, **options)


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
