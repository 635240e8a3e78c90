"""Which backends can run here, and why not when they can't.

``auto`` picks, for the input's device, the first available of:
CPU tensors: ``cpu`` (fused C++ kernels) then ``torch``;
CUDA tensors: ``cuda`` (fused CUDA kernels), ``triton``, then ``torch``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping

import torch

from . import ops

BACKENDS = ("auto", "cpu", "cuda", "triton", "torch")
AUTO_ORDER = {"cpu": ("cpu", "torch"), "cuda": ("cuda", "triton", "torch")}


def unavailable_reason(backend: str) -> str | None:
    """None when ``backend`` can run here, else a sentence saying why not."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend in ("auto", "torch"):
        return None
    if backend == "cpu":
        if not ops.HAVE_EXTENSION:
            return ops.EXTENSION_ERROR
        return None
    if backend == "cuda":
        if not ops.HAVE_EXTENSION:
            return ops.EXTENSION_ERROR
        if not ops.has_kernel("espcn_forward", "CUDA"):
            return "the extension was built without its CUDA kernels (rebuild where nvcc and a CUDA torch are present)"
        if not torch.cuda.is_available():
            return "no CUDA GPU is available"
        return None
    if backend == "triton":
        if importlib.util.find_spec("triton") is None:
            return "triton is not installed (pip install triton)"
        if not torch.cuda.is_available() and not triton_interpreted():
            return "no CUDA GPU is available (TRITON_INTERPRET=1 runs the Triton kernels on the CPU, slowly)"
        return None
    return None  # pragma: no cover


def triton_interpreted() -> bool:
    """Whether the Triton kernels run in Triton's CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def available() -> dict[str, str | None]:
    """Every backend with None (available) or the reason it is not."""
    return {b: unavailable_reason(b) for b in BACKENDS if b != "auto"}


def resolve(backend: str, device: torch.device, reasons: Mapping[str, str | None] | None = None) -> str:
    """The concrete backend that runs an input on ``device``; a clear error if it can't.

    ``reasons``: :func:`available` taken earlier. torch.compile traces a
    lookup in it, where it cannot trace :func:`unavailable_reason`'s
    dispatcher and importlib queries (FastESPCN passes the one it took when
    it was built).
    """
    why = reasons.get if reasons is not None else unavailable_reason
    kind = device.type  # another device (mps, xpu, ...): no kernels of ours, the reference layers
    if backend == "auto":
        for candidate in AUTO_ORDER.get(kind, ("torch",)):
            if why(candidate) is None:
                return candidate
        return "torch"
    reason = why(backend)
    if reason is not None:
        raise RuntimeError(f"backend {backend!r} is not available: {reason}")
    if backend == "cpu" and device.type != "cpu":
        raise RuntimeError(f"backend 'cpu' runs CPU tensors, but the input is on {device}")
    if backend == "triton" and device.type != "cuda" and not triton_interpreted():
        raise RuntimeError(
            f"backend 'triton' runs CUDA tensors (CPU ones with TRITON_INTERPRET=1), but the input is on {device}"
        )
    if backend == "cuda" and device.type != "cuda":
        raise RuntimeError(f"backend 'cuda' runs CUDA tensors, but the input is on {device}")
    return backend
