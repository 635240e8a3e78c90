"""A ``--device`` name checked against this machine: one set of words for every command."""

from __future__ import annotations

import torch


def device_problem(name: str) -> str | None:
    """Why ``name`` cannot run here (not a device, not cpu/cuda, no such GPU), or None when it can."""
    try:
        device = torch.device(name)
    except RuntimeError:
        return "not a device name (use cpu, cuda or cuda:N)"
    if device.type not in ("cpu", "cuda"):
        return "only cpu and cuda are supported"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return "no CUDA GPU is available here"
        if device.index is not None and device.index >= torch.cuda.device_count():
            return f"this machine has {torch.cuda.device_count()} CUDA GPU(s)"
    return None
