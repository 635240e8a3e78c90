"""Files written whole or not at all: a temporary name beside the target, renamed over it."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path`` to write to; renames it over ``path`` when the block
    ends without an error, and removes it in every case, so that a crash or a failed write (disk
    full, a folder in the way) leaves ``path`` as it was and nothing else behind. The name is new
    each call (two writers of one path do not share it); the writer creates the file, so it gets
    the usual permissions."""
    path = Path(path)
    # At most 180 bytes of the name: the temporary one must fit where the target's 255 do.
    stem = path.name.encode()[:180].decode(errors="ignore")
    tmp = path.with_name(f".{stem}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # e.g. a read-only folder: the write's own error is the one to see
            pass
