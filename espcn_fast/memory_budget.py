"""How much host memory an image upscale may use, and the tile that keeps it within that.

The untiled 8-bit path holds, besides the input and the uint8 output, float32
planes of Y, Cb, Cr and RGB at the output's size: about ``WORK_BYTES`` per
output pixel at its peak (measured on the CPU for x2-x4, grey, colour and
alpha). Tiles bound that part by the tile; the output itself, and the copy the
image writer makes of it, cannot be tiled, so an image whose output alone
passes the budget is refused before any work.
"""

from __future__ import annotations

import math
import numbers
import os
import re

# Peak bytes per output pixel of the untiled path's intermediates (measured 49-75 on the CPU).
WORK_BYTES = 80
# The image writer's copy of the output: Pillow keeps colour (with or without alpha) as 4 bytes a
# pixel; grey is written from the output's own memory.
WRITER_BYTES = {1: 0, 2: 4, 3: 4, 4: 4}
# The share of the memory available when a job starts that it may use by default.
DEFAULT_SHARE = 0.5
MIN_TILE = 16  # LR pixels: below this the 4-pixel halo is most of the work
_HALO = 4

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


class MemoryBudgetError(MemoryError):
    """An image whose output alone would not fit the memory budget."""


def available_memory() -> int:
    """Bytes this process can get without swapping or being stopped: the system's (``MemAvailable``; free
    pages where that is missing), or less where a limit of the process's own leaves less (a container's
    or a batch job's memory cgroup, ``ulimit -v``), which ``/proc/meminfo`` does not show."""
    have = _system_available()
    for headroom in (_cgroup_headroom(), _address_space_headroom()):
        if headroom is not None:
            have = min(have, headroom)
    return max(have, 0)


def _system_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30  # a system that says nothing: assume a small machine


CGROUP_ROOT = "/sys/fs/cgroup"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except (OSError, ValueError):
        return None


def _stat(text: str | None, key: str) -> int:
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def _cgroup_headroom() -> int | None:
    """The least memory left under the limits of this process's memory cgroups (v2, or v1's memory
    controller), the file cache they may reclaim counted as free; None when none is set or readable.
    Each folder from the process's own up to the mount is read: a limit may sit on a parent, and in a
    container the process's path may not exist under its own view of the mount, whose root is its cgroup."""
    own = _read("/proc/self/cgroup")
    if own is None:
        return None
    headroom = None
    for line in own.splitlines():
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # v2
            root, limit_file, usage_file, cache_key = CGROUP_ROOT, "memory.max", "memory.current", "inactive_file"
        elif "memory" in controllers.split(","):
            root = os.path.join(CGROUP_ROOT, "memory")
            limit_file, usage_file, cache_key = "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"
        else:
            continue
        parts = [p for p in path.strip().split("/") if p]
        for depth in range(len(parts), -1, -1):
            folder = os.path.join(root, *parts[:depth])
            limit, usage = _read(os.path.join(folder, limit_file)), _read(os.path.join(folder, usage_file))
            if limit is None or usage is None or not limit.strip().isdigit() or not usage.strip().isdigit():
                continue  # "max" (none), or not there
            cache = _stat(_read(os.path.join(folder, "memory.stat")), cache_key)
            left = int(limit) - max(int(usage) - cache, 0)
            headroom = left if headroom is None else min(headroom, left)
    return headroom


def _address_space_headroom() -> int | None:
    """What ``ulimit -v`` (RLIMIT_AS) leaves above the process's address space now, or None without one."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return None
    match = re.search(r"^VmSize:\s+(\d+) kB", _read("/proc/self/status") or "", re.MULTILINE)
    return limit - int(match.group(1)) * 1024 if match else None


def default_budget() -> int:
    """``DEFAULT_SHARE`` of the memory available now."""
    return int(available_memory() * DEFAULT_SHARE)


def parse_size(text: str) -> int:
    """``"512M"``, ``"4G"``, ``"1.5GiB"``, ``"2000000000"`` -> bytes (binary units); ValueError naming the text."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if match is None:
        raise ValueError(f"not a memory size: {text!r} (examples: 512M, 4G, 1.5GiB)")
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if value < 1:
        raise ValueError(f"a memory size must be positive, got {text!r}")
    return int(value)


def budget_bytes(value: object) -> int:
    """A ``max_memory`` as bytes: a number of bytes (``4e9`` included), or a size as ``--max-memory``
    takes it (``"4G"``); ValueError naming the value for anything else, zero and negatives included
    (they would only refuse every image, with a message about the image)."""
    if isinstance(value, str):
        return parse_size(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 1:
        raise ValueError(f"max_memory must be a positive number of bytes or a size such as '4G', got {value!r}")
    return int(value)


def format_size(n: float) -> str:
    """Bytes as a short human figure (``1.5 GiB``)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def fixed_bytes(channels: int, height: int, width: int, scale: int) -> int:
    """What no tile can bound: the input, the output, and the writer's copy of the output."""
    hr = height * width * scale * scale
    return channels * height * width + channels * hr + WRITER_BYTES[channels] * hr


def plan_tile(channels: int, height: int, width: int, scale: int, budget: int) -> int | None:
    """The LR tile that keeps an upscale within ``budget`` bytes, or ``None`` when the whole image fits.

    Raises :class:`MemoryBudgetError` when the output alone would pass the budget.
    """
    fixed = fixed_bytes(channels, height, width, scale)
    if fixed > budget:
        raise MemoryBudgetError(
            f"a {width}x{height} image at x{scale} needs about {format_size(fixed)} for its output alone, "
            f"over the memory budget of {format_size(budget)} (--max-memory / max_memory)"
        )
    left = budget - fixed
    if WORK_BYTES * height * width * scale * scale <= left:
        return None
    # The largest even tile whose crop (tile + halo on each side) fits what is left.
    side = math.isqrt(max(0, left // (WORK_BYTES * scale * scale))) - 2 * _HALO
    return max(MIN_TILE, side - side % 2)
