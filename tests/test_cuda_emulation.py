"""The fused CUDA kernel's own code, run on the CPU emulator (tests/cpp/cuda_emulator.h),
against the float64 reference.

This checks what a GPU-less machine can: the tiling, halos, image-edge
padding, the implicit-GEMM index maths, the shared-memory layout, the B
fragment packing, the A fragment loads (ldmatrix and gathers) and the pixel
shuffle, for every precision and both tile shapes, with outputs starting as
NaN and shared memory poisoned. The emulator builds the mma.sync and ldmatrix
results from the PTX ISA's fragment layouts; timing, races between real warps
and the hardware's own rounding are left to the GPU check.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from .kernel_checks import random_model, reference64

ROOT = Path(__file__).resolve().parent.parent
CUDA_INCLUDE = next((p for p in (Path("/usr/local/cuda/include"), *sorted(Path("/usr/local").glob("cuda*/include")))
                     if (p / "cuda_fp16.h").exists()), None)
REL_TOL = {"fp32": 1e-6, "tf32": 2e-3, "fp16": 4e-3, "bf16": 3e-2}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory) -> Path:
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None or CUDA_INCLUDE is None:
        pytest.skip("needs a C++20 compiler and the CUDA toolkit's headers")
    exe = tmp_path_factory.mktemp("emulator") / "fused_emulation"
    build = subprocess.run([cxx, "-std=c++20", "-O2", "-pthread", f"-I{CUDA_INCLUDE}",
                            str(ROOT / "tests/cpp/fused_emulation.cpp"), "-o", str(exe)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    return exe


def emulate(exe: Path, tmp: Path, model, x: torch.Tensor, precision: str, blocks: int, tile: int,
            half: bool = False, clamp: bool = False) -> torch.Tensor:
    n, _, h, w = x.shape
    r = model.scale
    x.numpy().astype(np.float32).tofile(tmp / "x.f32")
    params = [t.detach().reshape(-1) for t in model.state_dict().values()]
    torch.cat(params).numpy().astype(np.float32).tofile(tmp / "w.f32")
    args = [str(exe), precision, str(r), str(n), str(h), str(w), str(blocks), str(tile),
            str(tmp / "x.f32"), str(tmp / "w.f32"), str(tmp / "out.f32")]
    run = subprocess.run(args + (["half"] if half else []) + (["clamp"] if clamp else []),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return torch.from_numpy(np.fromfile(tmp / "out.f32", dtype=np.float32)).reshape(n, 1, h * r, w * r)


def check(out: torch.Tensor, ref: torch.Tensor, precision: str) -> None:
    assert torch.isfinite(out).all(), f"{int((~torch.isfinite(out)).sum())} outputs unwritten or NaN"
    err = float((out.double() - ref).norm() / ref.norm())
    assert err <= REL_TOL[precision], f"{precision}: relative error {err:.2e}"
    if precision == "fp32":
        torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=0)  # random weights: outputs up to ~20


# Sizes chosen against the tile shapes (16-bit 14x30 / 6x14, 32-bit 6x22 / 4x14):
# tile remainders in both directions, images narrower than a tile, a 1x1 image.
CASES = [
    # precision, scale, (n, h, w), blocks, tile
    ("fp16", 3, (1, 17, 33), 2, 0),
    ("fp16", 2, (2, 7, 16), 3, 1),
    ("bf16", 4, (1, 15, 31), 1, 0),
    ("bf16", 3, (1, 1, 1), 1, 1),
    ("tf32", 2, (1, 7, 23), 2, 0),
    ("tf32", 4, (1, 5, 15), 1, 1),
    ("fp32", 3, (1, 7, 24), 2, 0),
    ("fp32", 2, (2, 5, 9), 2, 1),
]


@pytest.mark.parametrize("precision, scale, shape, blocks, tile", CASES)
def test_fused_kernel_on_the_emulator(emulator, tmp_path, precision, scale, shape, blocks, tile):
    model = random_model(scale, seed=shape[1] * 7 + shape[2])
    x = torch.rand(shape[0], 1, shape[1], shape[2], generator=torch.Generator().manual_seed(shape[2]))
    out = emulate(emulator, tmp_path, model, x, precision, blocks, tile)
    check(out, reference64(model, x), precision)


def test_half_images_and_clamp_on_the_emulator(emulator, tmp_path):
    model = random_model(3, seed=11)
    x = torch.rand(1, 1, 9, 17, generator=torch.Generator().manual_seed(3))
    out = emulate(emulator, tmp_path, model, x, "fp16", 1, 1, half=True, clamp=True)
    ref = reference64(model, x.half().float(), clamp=True)
    assert out.min() >= 0 and out.max() <= 1
    check(out, ref, "fp16")
