"""The sm_90a kernel (csrc/cuda/espcn_hopper_kernel.cuh) on the CPU emulator,
against the float64 reference, and the emulator's own wgmma / mbarrier / TMA
model against plain loops first (tests/cpp/hopper_emulator_check.cpp).

The emulator defers what the hardware does asynchronously (a wgmma's operand
reads and accumulator writes to its wait, a tensor copy's data to its
mbarrier wait, the copy's destination poisoned meanwhile), so a kernel that
relies on the wrong order computes wrong numbers here. Shared memory and the
outputs start as NaN. Timing, the hardware's own rounding and real races are
left to the GPU check (compute-sanitizer racecheck there).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from . import cuda_emulator
from .kernel_checks import assert_matches_reference, random_model, reference64


def test_the_emulator_against_plain_loops(tmp_path_factory):
    exe = cuda_emulator.build(tmp_path_factory, "tests/cpp/hopper_emulator_check.cpp", "hopper_emulator_check")
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def emulate_hopper(exe: Path, tmp: Path, model, x: torch.Tensor, precision: str, blocks: int, rows: int, **flags):
    """The sm_90a kernel with ``rows`` strip rows (see CASES)."""
    return cuda_emulator.emulate_network(exe, tmp, "hopper", model, x, precision, blocks, rows, **flags)


# Widths against the 60-column strips (a remainder strip, one narrower than a
# strip, exactly two), heights against the strip rows (remainders, a strip
# taller than the image); fewer blocks than strips makes both consumers of a
# block loop and the 3 image stages wrap; batch > 1 puts strips of two images
# in one block.
CASES = [
    # precision, scale, (n, h, w), blocks, strip rows (0: the launcher's choice; + 100: 2 rows a step)
    ("fp16", 3, (1, 13, 68), 1, 5),
    ("bf16", 3, (2, 9, 64), 2, 4),
    ("fp16", 2, (1, 7, 120), 1, 0),
    ("bf16", 4, (1, 11, 20), 1, 6),
    ("fp16", 4, (2, 6, 24), 3, 0),
    ("bf16", 2, (1, 5, 8), 1, 48),
    # 2 rows a step (strip rows + 100): odd strip rows leave a step's second row unused.
    ("fp16", 3, (1, 13, 68), 1, 105),
    ("bf16", 4, (2, 10, 64), 2, 104),
    ("fp16", 2, (1, 7, 124), 1, 100),
]


@pytest.mark.parametrize("precision, scale, shape, blocks, rows", CASES)
def test_hopper_kernel_on_the_emulator(emulator, tmp_path, precision, scale, shape, blocks, rows):
    model = random_model(scale, seed=shape[1] * 5 + shape[2])
    x = torch.rand(shape[0], 1, shape[1], shape[2], generator=torch.Generator().manual_seed(shape[2] + scale))
    out = emulate_hopper(emulator, tmp_path, model, x, precision, blocks, rows)
    assert_matches_reference(out, reference64(model, x), precision)


def test_hopper_half_images_and_clamp_on_the_emulator(emulator, tmp_path):
    model = random_model(3, seed=12)
    x = torch.rand(1, 1, 9, 16, generator=torch.Generator().manual_seed(4))
    out = emulate_hopper(emulator, tmp_path, model, x, "fp16", 1, 4, half=True, clamp=True)
    ref = reference64(model, x.half().float(), clamp=True)
    assert out.min() >= 0 and out.max() <= 1
    assert_matches_reference(out, ref, "fp16")


def test_hopper_bf16_saturates_layer_1_as_the_fused_kernel(emulator, tmp_path):
    # Layer 1 of bf16 runs in fp16, pixels past +-65504 saturating: the same outputs as a clamped image.
    model = random_model(2, seed=1)
    x = torch.full((1, 1, 6, 12), 65535.0)
    x[..., ::2] = -70000.0
    out = emulate_hopper(emulator, tmp_path, model, x, "bf16", 1, 0)
    assert torch.isfinite(out).all()
    assert torch.equal(out, emulate_hopper(emulator, tmp_path, model, x.clamp(-65504, 65504), "bf16", 1, 0))


@pytest.mark.parametrize("w, half", [(10, False), (12, True), (9, False)])
def test_hopper_declines_rows_a_tensor_map_cannot_describe(emulator, tmp_path, w, half):
    # Image rows must be a multiple of 16 bytes: the 14x30 kernel takes the others.
    (tmp_path / "x.f32").write_bytes(np.zeros(3 * w, np.float32).tobytes())
    (tmp_path / "w.f32").write_bytes(np.zeros(64 * 25 + 64 + 32 * 64 * 9 + 32 + 4 * 32 * 9 + 4, np.float32).tobytes())
    run = subprocess.run(
        [
            str(emulator),
            "hopper",
            "fp16",
            "2",
            "1",
            "3",
            str(w),
            "1",
            "0",
            str(tmp_path / "x.f32"),
            str(tmp_path / "w.f32"),
            str(tmp_path / "out.f32"),
        ]
        + (["half"] if half else []),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 3, run.stderr
