"""How much a piece of Python grows a fresh process at its peak: the resident set's high-water mark,
reset just before the code runs (Linux's /proc/self/clear_refs), less the resident set at that moment."""

from __future__ import annotations

import subprocess
import sys

_RUNNER = """
import re, sys
def _status(key):
    return int(re.search(key + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
exec(compile(sys.argv[1], "<setup>", "exec"))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the high-water mark starts again from here
_before = _status("VmRSS")
exec(compile(sys.argv[2], "<measured>", "exec"))
print("PEAK_GROWTH", _status("VmHWM") - _before)
"""


def peak_growth(setup: str, measured: str, *args: str, timeout: float = 600) -> tuple[int, str]:
    """Runs ``setup`` then ``measured`` in a new interpreter (``sys.argv[3:]`` = ``args``); returns the
    bytes the process grew by at its peak during ``measured``, and what it printed."""
    run = subprocess.run(
        [sys.executable, "-c", _RUNNER, setup, measured, *args], capture_output=True, text=True, timeout=timeout
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    growth = int(lines[-1].split()[1])
    return growth, "\n".join(lines[:-1])
