"""Peak memory of one benchmark row, measured in the benchmark's own process.

CUDA: the caching allocator's peak during one call, over what was allocated
before it. CPU: the rise of the process's peak resident set (VmHWM) during the
row's first call after its setup, the accuracy check's: what the call needs,
with what a framework allocates on its first run and keeps. The timing runs
keep freed memory mapped (``malloc_env``), so first every free page of glibc's
heaps is handed back (``malloc_trim(0)``, which also drops the pages inside
free chunks) and the high-water mark is reset to the present resident set
(writing "5" to /proc/self/clear_refs): every page the call then touches,
fresh or reused from a free list, counts. No call of its own, in place of a
fresh child process a row (which set each row up a second time: compiles,
quantization, calibration) and was the largest fixed cost of a full run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import torch

T = TypeVar("T")


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cuda_peak_mib(fn: Callable[[torch.Tensor], object], x: torch.Tensor) -> float:
    torch.cuda.synchronize(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    base = torch.cuda.memory_allocated(x.device)
    fn(x)
    torch.cuda.synchronize(x.device)
    return (torch.cuda.max_memory_allocated(x.device) - base) / 2**20


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (another C library)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def reset_high_water_mark() -> bool:
    """Free heap pages back to the OS, then VmHWM := VmRSS; False where this cannot be done here."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def call_with_rss_peak(fn: Callable[[torch.Tensor], T], x: torch.Tensor) -> tuple[T, float | None]:
    """``(fn(x), the peak resident-set rise of this process during that call in MiB)``; the peak is None
    where the high-water mark cannot be reset (not Linux, not glibc)."""
    if not reset_high_water_mark():
        return fn(x), None
    base = _status_kib("VmRSS")
    out = fn(x)
    peak = _status_kib("VmHWM")
    if base is None or peak is None:
        return out, None
    return out, max(0, peak - base) / 1024
