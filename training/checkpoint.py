"""Training checkpoints: everything needed to resume exactly, written atomically."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from espcn_fast.atomic_write import replacing


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

    A crash mid-write leaves the previous checkpoint intact; a failed write
    (disk full, a folder in the way) leaves no temporary file behind and raises
    a one-line :class:`~espcn_fast.atomic_write.WriteError` naming the file.
    """
    # Through a Python file: torch.save to a path loses the system's error (a full disk reads
    # "unexpected pos"), where a file object's OSError stays in the chain of torch's RuntimeError.
    with replacing(path, errors=(OSError, RuntimeError)) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


# torch.save writes a zip archive, whose last record (at most 64 KiB of comment before the file's
# end) says where its directory is: a file cut short lacks it.
_ZIP_START = b"PK\x03\x04"
_ZIP_END = b"PK\x05\x06"
_ZIP_END_SPAN = 22 + 65535


def _unreadable(path: Path, exc: Exception) -> str:
    """Why ``path``, which ``torch.load`` refused with ``exc``, is no checkpoint: the end of a sentence
    starting with its name, one line, without torch's advice (an unsafe load, an internal miniz error)."""
    with open(path, "rb") as f:
        head = f.read(len(_ZIP_START))
        size = f.seek(0, os.SEEK_END)
        f.seek(max(size - _ZIP_END_SPAN, 0))
        tail = f.read()
    if head != _ZIP_START:
        return "is not a training checkpoint (not a file that torch.save writes)"
    if _ZIP_END not in tail:
        return f"is truncated ({size} bytes, the end of the archive missing): a checkpoint cut short, not readable"
    if isinstance(exc, pickle.UnpicklingError):  # torch's text suggests an unsafe load: not for a file we wrote
        return "is not a training checkpoint (not readable as one)"
    message = " ".join(str(exc).split()).split(". ")[0]  # torch's first sentence; the rest is advice
    return f"is a corrupt training checkpoint (cannot read it: {message or type(exc).__name__})"


# What the training loop reads from a checkpoint, and the type of each.
EXPECTED: dict[str, type | tuple[type, ...]] = {
    "args": dict,
    "model": dict,
    "optimizer": dict,
    "scheduler": dict,
    "epoch": int,
    "best_psnr": (float, int),
    "samplers": list,
    "rng": list,
}


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_atomic`; a one-line ValueError if it can't be.

    Only tensors and plain data are unpickled (``weights_only``); the keys the
    training loop needs are checked here, so that a stray file fails with its
    name and not later with a KeyError.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint to resume from: {path}")
    if path.stat().st_size == 0:  # torch.load would say EOFError() and nothing more
        raise ValueError(f"{path} is empty (0 bytes): not a training checkpoint, or one whose writing was cut short")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip and pickle readers raise many types for other files
        raise ValueError(f"{path} {_unreadable(path, exc)}") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} is not a training checkpoint (it holds a {type(ckpt).__name__})")
    for key, kind in EXPECTED.items():
        if key not in ckpt:
            raise ValueError(f"{path} is not a training checkpoint (missing {key!r})")
        if not isinstance(ckpt[key], kind):
            raise ValueError(f"{path} is not a training checkpoint ({key!r} is a {type(ckpt[key]).__name__})")
    return ckpt
