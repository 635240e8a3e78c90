"""The fused ops ``torch.ops.espcn_fast.*``: loading the extension and their fake kernels.

The schemas live in ``csrc/ops.cpp``, where the CPU and CUDA kernels are
registered; the Triton kernels are registered by ``espcn_fast.triton_backend``
under their own namespace. The fake (meta) kernels below only compute output
shapes, so that ``torch.compile`` traces through the ops.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import reduced_precision
from .op_checks import PRECISIONS as PRECISIONS  # (re-exported: the ops' precisions)
from .op_checks import check_a1_ranges, check_layers, check_precision

try:
    from . import _C  # noqa: F401  (loading the library registers the ops)

    EXTENSION_ERROR: str | None = None
except ImportError as exc:  # a source checkout without a build
    EXTENSION_ERROR = (
        f"the C++ extension espcn_fast._C is not built ({exc}); build it with `pip install --no-build-isolation -e .`"
    )

HAVE_EXTENSION = EXTENSION_ERROR is None

# espcn_forward's weights w1..w3 come in WEIGHT_DTYPES[precision] (int8: float32, quantized by the kernel).
WEIGHT_DTYPES = {
    "fp32": torch.float32,
    "tf32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "int8": torch.float32,
}
# The precisions of the CPU kernels (their arithmetic: reduced_precision), and those only they compute in.
CPU_PRECISIONS = reduced_precision.CPU_PRECISIONS
CPU_ONLY_PRECISIONS = ("int8",)
# What the GPU kernels (CUDA and Triton) read and write; FastESPCN converts other float images.
IMAGE_DTYPES = (torch.float32, torch.float16)


def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether ``espcn_fast::<op>`` has a kernel for ``dispatch_key`` ("CPU", "CUDA")."""
    if not HAVE_EXTENSION:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"espcn_fast::{op}", dispatch_key)


def cpu_isa(precision: str = "fp32") -> str | None:
    """The CPU kernels that run ``precision`` here ("avx512", "avx2", "portable" for fp32; "avx512-bf16"
    for bf16; "avx512-vnni", "avx-vnni", "avx-vnni-evex" for int8), or None without the extension.
    RuntimeError naming the missing instruction set where this CPU cannot run ``precision``."""
    return torch.ops.espcn_fast.cpu_isa(precision) if HAVE_EXTENSION else None


def fake_kernels(namespace: str) -> dict[str, Callable[..., torch.Tensor]]:
    """The three ops' fake kernels (output shapes, and the checks that decide them: ``op_checks``),
    their errors naming ``namespace::op``: one set for the C++ ops and the Triton ones."""

    def conv2d_tanh(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        check_layers(f"{namespace}::conv2d_tanh", x, [("weight", weight)], None)
        return x.new_empty((x.shape[0], weight.shape[0], x.shape[2], x.shape[3]))

    def conv2d_pixel_shuffle(
        x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, scale: int, clamp: bool
    ) -> torch.Tensor:
        check_layers(f"{namespace}::conv2d_pixel_shuffle", x, [("weight", weight)], scale)
        return x.new_empty((x.shape[0], weight.shape[0] // (scale * scale), x.shape[2] * scale, x.shape[3] * scale))

    def espcn_forward(
        x: torch.Tensor,
        w1: torch.Tensor,
        b1: torch.Tensor,
        w2: torch.Tensor,
        b2: torch.Tensor,
        w3: torch.Tensor,
        b3: torch.Tensor,
        scale: int,
        clamp: bool,
        precision: str = "fp32",
        a1_ranges: torch.Tensor | None = None,
    ) -> torch.Tensor:
        op = f"{namespace}::espcn_forward"
        check_precision(op, precision)
        check_layers(op, x, [("w1", w1), ("w2", w2), ("w3", w3)], scale)
        check_a1_ranges(op, precision, a1_ranges, x, w1.shape[0])
        return x.new_empty((x.shape[0], w3.shape[0] // (scale * scale), x.shape[2] * scale, x.shape[3] * scale))

    return {"conv2d_tanh": conv2d_tanh, "conv2d_pixel_shuffle": conv2d_pixel_shuffle, "espcn_forward": espcn_forward}


if HAVE_EXTENSION:
    for _name, _fake in fake_kernels("espcn_fast").items():
        torch.library.register_fake(f"espcn_fast::{_name}")(_fake)


def _require_extension() -> None:
    if not HAVE_EXTENSION:
        raise RuntimeError(EXTENSION_ERROR)


def conv2d_tanh(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``tanh(conv2d(x, weight, bias, padding=k // 2))``, fused; odd square kernels."""
    _require_extension()
    return torch.ops.espcn_fast.conv2d_tanh(x, weight, bias)


def conv2d_pixel_shuffle(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, scale: int, clamp: bool = False
) -> torch.Tensor:
    """``pixel_shuffle(conv2d(x, weight, bias, padding=k // 2), scale)``, written straight to HR."""
    _require_extension()
    return torch.ops.espcn_fast.conv2d_pixel_shuffle(x, weight, bias, scale, clamp)


def espcn_forward(
    x: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    w3: torch.Tensor,
    b3: torch.Tensor,
    scale: int,
    clamp: bool = False,
    precision: str = "fp32",
    a1_ranges: torch.Tensor | None = None,
) -> torch.Tensor:
    """The whole ESPCN in one op: conv-tanh, conv-tanh, conv-pixel-shuffle (optionally clamped).

    ``precision``: "fp32" everywhere; "tf32", "fp16", "bf16" on CUDA tensors; "bf16" and "int8" on
    CPU tensors (arithmetic of :mod:`espcn_fast.reduced_precision`; the int8 kernel quantizes the
    float32 weights itself). w1..w3 come in ``WEIGHT_DTYPES[precision]``, biases in float32.
    ``a1_ranges``: int8 only, float32 per-channel ranges in (0, 1] of layer 1's outputs (the int8
    weight files' ``a1_ranges``); ``None``: 1.
    """
    _require_extension()
    return torch.ops.espcn_fast.espcn_forward(x, w1, b1, w2, b2, w3, b3, scale, clamp, precision, a1_ranges)
