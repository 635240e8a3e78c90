"""Where the image sets live: ``--data``, ``$ESPCN_FAST_DATA``, or ``../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent


def find_data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data folder; a clear error naming the places looked in when none exists."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_dir():
            raise FileNotFoundError(f"data folder not found: {path}")
        return path
    candidates = []
    if os.environ.get("ESPCN_FAST_DATA"):
        candidates.append(Path(os.environ["ESPCN_FAST_DATA"]))
    candidates += [Path.cwd() / ".." / "shared" / "data", _REPO.parent / "shared" / "data"]
    for path in candidates:
        if path.is_dir():
            return path.resolve()
    raise FileNotFoundError(
        "data folder not found; looked in "
        + ", ".join(str(p) for p in candidates)
        + " (pass --data DIR or set ESPCN_FAST_DATA)"
    )
