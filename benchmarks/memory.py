"""Peak memory of one benchmark row: CUDA's allocator stats, or the process's peak RSS on Linux."""

from __future__ import annotations

import contextlib
from pathlib import Path
import torch


def _rss_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.mib`` (None where unknown).

    CPU: the rise of the peak resident set over what the process held before
    (Linux resets the peak with /proc/self/clear_refs). CUDA: the allocator's
    peak over what was allocated before.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mib: float | None = None
        self._base = 0

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            with contextlib.suppress(OSError):
                Path("/proc/self/clear_refs").write_text("5")
            self._base = _rss_kib("VmRSS") or 0
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        else:
            peak = _rss_kib("VmHWM")
            self.mib = None if peak is None else max(0, peak - self._base) / 1024
