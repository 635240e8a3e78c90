"""Whether a PNG file's compressed stream holds every row its header declares.

A PNG whose chunks and CRCs are valid but whose zlib stream ends early (a
file rewritten after a crash, a careless encoder) decodes without an error
in Pillow, the missing rows left at zero: a black band that would be upscaled
and written as if it were the picture. This reads the stream once more,
inflating it in bounded pieces and counting the bytes, before Pillow decodes.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
# Adam7 passes: (first row, row step, first column, column step).
_ADAM7 = ((0, 8, 0, 8), (0, 8, 4, 8), (4, 8, 0, 4), (0, 4, 2, 4), (2, 4, 0, 2), (0, 2, 1, 2), (1, 2, 0, 1))
_PIECE = 1 << 20  # inflated at most this many bytes at a time


def _row_bytes(width: int, bits_per_pixel: int) -> int:
    return 1 + (width * bits_per_pixel + 7) // 8  # the filter byte, then the packed samples


def expected_bytes(width: int, height: int, bit_depth: int, colour_type: int, interlaced: bool) -> int:
    """Inflated size of a PNG's image data: every row's filter byte and samples, over the Adam7 passes if interlaced."""
    bpp = bit_depth * _CHANNELS[colour_type]
    if not interlaced:
        return height * _row_bytes(width, bpp)
    total = 0
    for y0, dy, x0, dx in _ADAM7:
        rows, cols = (height - y0 + dy - 1) // dy, (width - x0 + dx - 1) // dx
        if rows > 0 and cols > 0:
            total += rows * _row_bytes(cols, bpp)
    return total


def short_rows(path: Path) -> str | None:
    """A description of what is missing when the image data stops short, else None.

    Chunks the reader cannot follow (a bad signature, a cut chunk, an unknown
    colour type) are left to Pillow, which reports them as corrupt.
    """
    with open(path, "rb") as f:
        if f.read(8) != _SIGNATURE:
            return None
        header = None
        inflater = zlib.decompressobj()
        inflated = 0
        while True:
            head = f.read(8)
            if len(head) < 8:
                break
            length, kind = struct.unpack(">I4s", head)
            if kind == b"IHDR":
                data = f.read(length)
                if len(data) < 13:
                    return None
                header = struct.unpack(">IIBBBBB", data[:13])
                f.seek(4, 1)
            elif kind == b"IDAT":
                left = length
                while left > 0:
                    data = f.read(min(left, _PIECE))
                    if not data:
                        break
                    left -= len(data)
                    inflated += _inflate(inflater, data)
                f.seek(4, 1)
            elif kind == b"IEND":
                break
            else:
                f.seek(length + 4, 1)
        if header is None or header[3] not in _CHANNELS:
            return None
        width, height, depth, colour, _, _, interlace = header
        try:
            inflated += _inflate(inflater, b"", flush=True)
        except zlib.error:
            pass  # a broken stream: Pillow's decoder says so itself
        expected = expected_bytes(width, height, depth, colour, interlace == 1)
        if inflated < expected:
            rows = inflated * height // expected if not interlace else None
            where = f"about {rows} of its {height} rows" if rows is not None else f"{inflated} of {expected} bytes"
            return f"its image data stops short: {where} are present"
        return None


def _inflate(inflater, data: bytes, flush: bool = False) -> int:
    """Bytes inflated from ``data``, in pieces of at most ``_PIECE`` (a crafted stream can expand a thousandfold)."""
    count = 0
    try:
        out = inflater.decompress(data, _PIECE)
        count += len(out)
        while inflater.unconsumed_tail:
            out = inflater.decompress(inflater.unconsumed_tail, _PIECE)
            count += len(out)
        if flush:
            count += len(inflater.flush())
    except zlib.error:
        pass  # a broken stream: Pillow's decoder says so itself
    return count
