"""The Triton implementations of the fused ops, registered with ``torch.library.triton_op``.

Same names, signatures and fake kernels as the C++ ops in ``espcn_fast::``
(one schema, several implementations), in their own namespace because the
CUDA dispatch key of ``espcn_fast::`` belongs to the C++ kernels:
``torch.ops.espcn_fast_triton.{conv2d_tanh, conv2d_pixel_shuffle, espcn_forward}``.
``espcn_forward`` runs the three layer kernels; its intermediates are stored
channels-last in the precision's dtype (float16/bfloat16 for those, float32
otherwise).
"""

from __future__ import annotations

import contextlib

import torch
import triton
from torch.library import triton_op, wrap_triton

from .. import ops as cpp_ops
from ..op_checks import check_a1_ranges, check_layers, check_precision
from . import kernels


def _check_input(op: str, x: torch.Tensor) -> None:
    """What the Triton kernels read, beyond the shape checks all implementations share (``op_checks``)."""
    if x.dtype not in cpp_ops.IMAGE_DTYPES:
        raise RuntimeError(f"{op}: x must be float32 or float16, got {str(x.dtype).replace('torch.', '')}")
    if x.device.type != "cuda" and not kernels.INTERPRETED:
        raise RuntimeError(
            f"{op}: the Triton kernels run CUDA tensors (or any with TRITON_INTERPRET=1), got {x.device}"
        )


def _check_conv(
    op: str,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    wname: str,
    bname: str,
    wdtype: torch.dtype = torch.float32,
) -> None:
    """A layer's devices, dtypes, kernel and bias, beyond the shared shape checks."""
    for t, name in ((weight, wname), (bias, bname)):
        if t.device != x.device:
            raise RuntimeError(
                f"{op}: {name} is on {t.device} but x is on {x.device}; all tensors must be on one device"
            )
    if weight.dtype != wdtype:
        raise RuntimeError(
            f"{op}: {wname} must be {str(wdtype).replace('torch.', '')}, got {str(weight.dtype).replace('torch.', '')}"
        )
    if bias.dtype != torch.float32:
        raise RuntimeError(f"{op}: {bname} must be float32, got {str(bias.dtype).replace('torch.', '')}")
    if weight.shape[2] != weight.shape[3] or weight.shape[2] % 2 == 0:
        raise RuntimeError(f"{op}: {wname} must be (out, in, k, k) with odd k, got shape {list(weight.shape)}")
    if bias.shape != (weight.shape[0],):
        raise RuntimeError(f"{op}: {bname} must have shape ({weight.shape[0]},), got {list(bias.shape)}")


def _check_addressable(op: str, x: torch.Tensor, channels_out: tuple[int, ...]) -> None:
    """Refuses sizes the kernels' int32 offsets cannot reach, before any output is allocated: an
    input or a tanh layer's output (``channels_out``) of 2^31 elements per image or more (offsets
    within an image are int32; the image's own, and the pixel shuffle's store, are int64), or a
    batch of nearly 2^31 pixels (numbered in int32, up to the end of the last row block)."""
    n, c, h, w = x.shape
    for name, elements in [("x", c * h * w)] + [
        (f"layer {i + 1}'s output", co * h * w) for i, co in enumerate(channels_out)
    ]:
        if elements >= 2**31:
            raise RuntimeError(
                f"{op}: {name} has {elements} elements per image, over the 2^31 the Triton kernels "
                "address; split the image (FastESPCN(tile=...) does)"
            )
    if n * h * w > 2**31 - 1024:  # the last row block's padding rows are numbered too (blocks <= 512)
        raise RuntimeError(
            f"{op}: the batch has {n * h * w} pixels, over the 2^31 - 1024 the Triton kernels "
            "number; run it in smaller batches"
        )


def _layer(
    op: str,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    out: torch.Tensor,
    shuffle: bool,
    scale: int,
    clamp: bool,
    precision: str,
) -> torch.Tensor:
    """Launches one layer into ``out`` (allocated by the caller, its sizes checked by ``_check_addressable``)."""
    n, c_in, h, w = x.shape
    c_out, k = weight.shape[0], weight.shape[2]
    if out.numel() == 0:
        return out
    bias = bias.contiguous()
    args = (x, weight, bias, out, n, h, w, c_in, c_out, scale, *x.stride(), *weight.stride(), *out.stride())
    flags = {
        "KSIZE": k,
        "SHUFFLE": shuffle,
        "CLAMP": clamp,
        "DOT": kernels.DOT_MODES[precision],
        "EMULATE_BF16": kernels.INTERPRETED,
        "TAP_MAJOR": kernels.tap_major(c_in),
        "FAST_TANH": kernels.fast_tanh(precision),
    }
    # Triton launches on the current device and its stream: x's, as the C++ ops' device guard does.
    with torch.cuda.device(x.device) if x.device.type == "cuda" else contextlib.nullcontext():
        if not kernels.AUTOTUNE:
            blocks = kernels.fixed_blocks(c_out, c_in, k, precision)
            grid = (triton.cdiv(n * h * w, blocks["BLOCK_M"]), triton.cdiv(c_out, blocks["BLOCK_N"]))
            wrap_triton(kernels.conv_kernel)[grid](*args, **flags, **blocks)
        else:

            def grid(meta):
                return (triton.cdiv(n * h * w, meta["BLOCK_M"]), triton.cdiv(c_out, meta["BLOCK_N"]))

            wrap_triton(kernels.TUNED[kernels.config_family(precision, c_in)])[grid](*args, **flags)
    return out


@triton_op("espcn_fast_triton::conv2d_tanh", mutates_args=())
def conv2d_tanh(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """tanh(conv2d(x, weight, bias)), "same" padding; as ``espcn_fast::conv2d_tanh``."""
    op = "espcn_fast_triton::conv2d_tanh"
    check_layers(op, x, [("weight", weight)], None)
    _check_input(op, x)
    _check_conv(op, x, weight, bias, "weight", "bias")
    _check_addressable(op, x, (weight.shape[0],))
    out = x.new_empty((x.shape[0], weight.shape[0], x.shape[2], x.shape[3]))
    return _layer(op, x, weight, bias, out, False, 1, False, "fp32")


@triton_op("espcn_fast_triton::conv2d_pixel_shuffle", mutates_args=())
def conv2d_pixel_shuffle(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, scale: int, clamp: bool
) -> torch.Tensor:
    """pixel_shuffle(conv2d(x, weight, bias), scale), clamped to [0, 1] if ``clamp``; as the C++ op."""
    op = "espcn_fast_triton::conv2d_pixel_shuffle"
    check_layers(op, x, [("weight", weight)], scale)
    _check_input(op, x)
    _check_conv(op, x, weight, bias, "weight", "bias")
    _check_addressable(op, x, ())
    out = x.new_empty((x.shape[0], weight.shape[0] // scale**2, x.shape[2] * scale, x.shape[3] * scale))
    return _layer(op, x, weight, bias, out, True, scale, clamp, "fp32")


@triton_op("espcn_fast_triton::espcn_forward", mutates_args=())
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
    """The whole network (three layer kernels) in ``precision``; as ``espcn_fast::espcn_forward``
    (``a1_ranges`` belongs to int8, which runs on the CPU only)."""
    op = "espcn_fast_triton::espcn_forward"
    check_precision(op, precision)
    torch._check(
        precision not in cpp_ops.CPU_ONLY_PRECISIONS, lambda: f"{op}: precision '{precision}' runs on the CPU only"
    )
    check_layers(op, x, [("w1", w1), ("w2", w2), ("w3", w3)], scale)
    check_a1_ranges(op, precision, a1_ranges, x, w1.shape[0])
    wdtype = cpp_ops.WEIGHT_DTYPES[precision]
    _check_input(op, x)
    for w, b, wname, bname in ((w1, b1, "w1", "b1"), (w2, b2, "w2", "b2"), (w3, b3, "w3", "b3")):
        _check_conv(op, x, w, b, wname, bname, wdtype)
    _check_addressable(op, x, (w1.shape[0], w2.shape[0]))
    n, _, h, w = x.shape
    # Intermediates in the weights' dtype, channels-last like the weights (a
    # no-op for FastESPCN's, which it keeps so): K-contiguous tiles.
    # bf16 runs layer 1 in fp16, as the CUDA kernel does: the 8-bit image does
    # not survive bf16's mantissa.
    last = torch.channels_last
    w1, w2, w3 = (t.contiguous(memory_format=last) for t in (w1, w2, w3))
    first = "fp16" if precision == "bf16" else precision
    h1 = _layer(
        op,
        x,
        w1,
        b1,
        torch.empty((n, w1.shape[0], h, w), dtype=wdtype, device=x.device, memory_format=last),
        False,
        1,
        False,
        first,
    )
    h2 = _layer(
        op,
        h1,
        w2,
        b2,
        torch.empty((n, w2.shape[0], h, w), dtype=wdtype, device=x.device, memory_format=last),
        False,
        1,
        False,
        precision,
    )
    out = x.new_empty((n, w3.shape[0] // scale**2, h * scale, w * scale))
    return _layer(op, h2, w3, b3, out, True, scale, clamp, precision)


# The fake kernels are the C++ ops' (shapes, and the checks that decide them).
_FAKES = cpp_ops.fake_kernels("espcn_fast_triton")
conv2d_tanh.register_fake(_FAKES["conv2d_tanh"])
conv2d_pixel_shuffle.register_fake(_FAKES["conv2d_pixel_shuffle"])
espcn_forward.register_fake(_FAKES["espcn_forward"])
