"""glibc settings for CPU timings, applied by re-executing the benchmark script.

glibc returns freed memory to the OS eagerly and then page-faults it back,
which doubles the time of the frame-sized allocations the benchmarks make.
The settings are read at process start, so a script calls
``reexec_with_malloc_env()`` before anything allocates (before importing torch).
"""

from __future__ import annotations

import os
import sys

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**31)}


def reexec_with_malloc_env(launch: list[str] | None = None) -> None:
    """Re-run this process with MALLOC_ENV unless it already has it. ``launch`` is how Python was
    told what to run (default: the script, ``sys.argv[0]``; ``["-m", "pkg.module"]`` for a module)."""
    if any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        argv = [sys.executable, *(launch or sys.argv[:1]), *sys.argv[1:]]
        os.execve(sys.executable, argv, {**os.environ, **MALLOC_ENV})
