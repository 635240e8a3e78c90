"""The sm_90a kernel on a compute capability 9.0 GPU (H100, H200): the fused
op takes it for fp16 and bf16 when image rows are whole 16-byte units, and its
outputs match the float64 reference; other widths keep the 14x30 kernel.

These run on a GPU machine (``benchmarks/gpu_check.sh``); elsewhere they skip
and say why. On the CPU, tests/test_hopper_emulation.py runs the same kernel
code on the emulator.
"""

from __future__ import annotations

import pytest
import torch

from espcn_fast import backends, ops

from .kernel_checks import assert_matches_reference, poisoned_outputs, random_model, reference64, weights


def _skip_reason() -> str | None:
    reason = backends.unavailable_reason("cuda")
    if reason is not None:
        return f"{reason}; the kernels run in benchmarks/gpu_check.sh"
    if torch.cuda.get_device_capability() != (9, 0):
        return "the Hopper kernel runs on compute capability 9.0 alone"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


def cuda_weights(model, precision: str) -> list[torch.Tensor]:
    wdtype = ops.WEIGHT_DTYPES[precision]
    return [t.cuda().to(wdtype if i % 2 == 0 else torch.float32) for i, t in enumerate(weights(model))]


def launched_kernels(fn) -> list[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]


# Widths against the 60-column strips (multiples of 4: float32 rows of whole
# 16-byte units), odd heights against the strip rows, batches.
SHAPES = [(1, 1, 1, 4), (1, 1, 7, 60), (2, 1, 33, 124), (3, 1, 61, 200), (1, 1, 360, 640), (8, 1, 45, 64)]


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("shape", SHAPES)
def test_hopper_kernel_matches_the_reference(precision, scale, shape):
    model = random_model(scale, seed=scale + shape[2])
    x = torch.rand(shape, generator=torch.Generator().manual_seed(shape[3]))
    args = cuda_weights(model, precision)
    with poisoned_outputs():
        out = ops.espcn_forward(x.cuda(), *args, scale, False, precision)
    assert_matches_reference(out, reference64(model, x), precision)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_hopper_kernel_with_half_images_and_clamp(precision):
    model = random_model(3, seed=2)
    x = torch.rand(2, 1, 23, 136, generator=torch.Generator().manual_seed(2))
    with poisoned_outputs():
        out = ops.espcn_forward(x.half().cuda(), *cuda_weights(model, precision), 3, True, precision)
    assert out.dtype == torch.float16
    assert_matches_reference(out.float(), reference64(model, x.half().float(), clamp=True), precision)


@pytest.mark.parametrize(
    "w, dtype, offset, hopper",
    [
        (64, torch.float32, 0, True),
        (66, torch.float32, 0, False),
        (64, torch.float16, 0, True),
        (68, torch.float16, 0, False),
        (64, torch.float32, 1, False),
    ],
)
def test_the_launcher_takes_the_hopper_kernel_where_it_can(w, dtype, offset, hopper):
    # offset: the image starts that many elements into its storage (not 16-byte aligned).
    model = random_model(2, seed=3)
    x = torch.rand(20 * w + offset, device="cuda", dtype=dtype)[offset:].view(1, 1, 20, w)
    args = cuda_weights(model, "fp16")
    names = launched_kernels(lambda: ops.espcn_forward(x, *args, 2, False, "fp16"))
    assert any("espcn_hopper_kernel" in n for n in names) == hopper, names
    assert any("espcn_fused_kernel" in n for n in names) == (not hopper), names
    assert_matches_reference(
        ops.espcn_forward(x, *args, 2, False, "fp16").float(), reference64(model, x.float().cpu()), "fp16"
    )
