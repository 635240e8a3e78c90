"""Peak memory of one benchmark row.

CUDA: the caching allocator's peak during one call, over what was allocated
before it. CPU: the rise of the process's peak resident set during one call,
measured in a fresh child process whose glibc maps every large allocation
and unmaps it on free (MALLOC_MMAP_THRESHOLD_=64 KiB), so that the resident
set follows live memory. (The timing runs keep freed memory instead, which
is faster, and would report no rise at all.)
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from .malloc_env import PROBE_ENV

_PROBE_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "131072"}


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


def rss_peak_mib(fn: Callable[[torch.Tensor], object], x: torch.Tensor) -> float | None:
    """In this process: the peak RSS rise during one call (after a warm-up call)."""
    fn(x)
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    base = _status_kib("VmRSS")
    fn(x)
    peak = _status_kib("VmHWM")
    if base is None or peak is None:
        return None
    return max(0, peak - base) / 1024


def cpu_peak_mib_in_child(
    name: str, scale: int, batch: int, quick: bool, threads: int, precision: str = "fp32"
) -> float | None:
    """Run the benchmark in probe mode for one row; None where it can't be measured."""
    if not Path("/proc/self/status").exists():
        return None
    cmd = [
        sys.executable,
        "-m",
        "espcn_fast.benchmark",
        "--device",
        "cpu",
        "--scales",
        str(scale),
        "--batch",
        str(batch),
        "--threads",
        str(threads),
        "--backends",
        name,
    ] + (["--quick"] if quick else [])
    env = {**os.environ, **_PROBE_MALLOC, PROBE_ENV: precision}  # the row: its name and precision
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])["peak_mib"]
    except (subprocess.SubprocessError, ValueError, KeyError, IndexError):
        return None
