"""The CPU emulator of the CUDA kernels (tests/cpp/cuda_emulator.h): its build and its runs.

``emulate_kernels`` runs the kernels' own code on the CPU: ``fused`` (the mma.sync
network kernel), ``hopper`` (the sm_90a one) and ``layer`` (one convolution).
The tests hand it float32 files and read its output back as a tensor.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
CUDA_INCLUDE = next(
    (
        p
        for p in (Path("/usr/local/cuda/include"), *sorted(Path("/usr/local").glob("cuda*/include")))
        if (p / "cuda_fp16.h").exists()
    ),
    None,
)


def build(tmp_path_factory: pytest.TempPathFactory, source: str, name: str) -> Path:
    """Compile ``source`` (relative to the repository) into an executable; skip without a compiler
    or the CUDA headers."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None or CUDA_INCLUDE is None:
        pytest.skip("needs a C++20 compiler and the CUDA toolkit's headers")
    exe = tmp_path_factory.mktemp(name) / name
    compiled = subprocess.run(
        [cxx, "-std=c++20", "-O2", "-pthread", f"-I{CUDA_INCLUDE}", str(ROOT / source), "-o", str(exe)],
        capture_output=True,
        text=True,
    )
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    return exe


def run(args: list[str]) -> None:
    """Run the emulator; its stderr is the failure message."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr


def emulate_network(
    exe: Path,
    tmp: Path,
    kernel: str,
    model,
    x: torch.Tensor,
    precision: str,
    blocks: int,
    shape: int,
    half: bool = False,
    clamp: bool = False,
) -> torch.Tensor:
    """The whole network of ``model`` on ``x`` through ``kernel`` ("fused" or "hopper") with its
    tile shape or strip rows ``shape``, in ``blocks`` thread blocks."""
    n, _, h, w = x.shape
    r = model.scale
    x.numpy().astype(np.float32).tofile(tmp / "x.f32")
    params = [t.detach().reshape(-1) for t in model.state_dict().values()]
    torch.cat(params).numpy().astype(np.float32).tofile(tmp / "w.f32")
    args = [str(exe), kernel, precision, str(r), str(n), str(h), str(w), str(blocks), str(shape)]
    args += [str(tmp / "x.f32"), str(tmp / "w.f32"), str(tmp / "out.f32")]
    run(args + (["half"] if half else []) + (["clamp"] if clamp else []))
    return torch.from_numpy(np.fromfile(tmp / "out.f32", dtype=np.float32)).reshape(n, 1, h * r, w * r)
