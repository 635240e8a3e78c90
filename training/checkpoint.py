"""Training checkpoints: everything needed to resume exactly, written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def rng_state() -> dict[str, Any]:
    """The global torch RNG states of this process (CPU and CUDA).

    Training draws its patches from its own generator (saved with the sampler);
    these cover anything else that draws from the global RNG.
    """
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename over it.

    A crash mid-write leaves the previous checkpoint intact.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_atomic`; a clear error if it can't be."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint to resume from: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from None
