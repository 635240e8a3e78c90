"""One convolution layer as a Triton implicit GEMM, with its epilogue.

M = output pixels (all images of the batch, row-major), N = output channels,
K = in_channels * k * k: for layers with many channels one loop runs over taps
and, within each, blocks of channels; for the one-channel layer over
(ci, ky, kx) flattened. Any strides: espcn_forward keeps its activations and
weights channels-last, so that both tiles load 16 bytes at a time along K.
The A tile is gathered from the image with "same" zero padding by masks.
After the K loop: bias, then tanh or the pixel shuffle stored straight into
the HR layout (optionally clamped).

Block sizes: autotuned on a GPU over a short list for each kind of layer
(``CONFIGS``), keyed on the layer's shape;
one fixed, large configuration under ``TRITON_INTERPRET=1`` (no autotune
there, and the interpreter pays per program and K step).
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
# ESPCN_FAST_TRITON_AUTOTUNE=0: one fixed configuration on a GPU too (fast test runs; no tuning time).
AUTOTUNE = not INTERPRETED and os.environ.get("ESPCN_FAST_TRITON_AUTOTUNE", "1") != "0"

# How each precision multiplies: tl.dot's operand dtype and input_precision.
DOT_FP32, DOT_TF32, DOT_FP16, DOT_BF16 = 0, 1, 2, 3
DOT_MODES = {"fp32": DOT_FP32, "tf32": DOT_TF32, "fp16": DOT_FP16, "bf16": DOT_BF16}

# tanh's Taylor coefficients x^3 .. x^21 (odd terms): below |x| = 0.55 the
# series to x^21 is within float rounding; above, 1 - 2 / (e^2|x| + 1) has no
# cancellation. Written with exp so that it also runs in the interpreter.
_T3 = tl.constexpr(-0.3333333333333333)
_T5 = tl.constexpr(0.13333333333333333)
_T7 = tl.constexpr(-0.05396825396825397)
_T9 = tl.constexpr(0.021869488536155203)
_T11 = tl.constexpr(-0.008863235529902197)
_T13 = tl.constexpr(0.003592128036572481)
_T15 = tl.constexpr(-0.0014558343870513183)
_T17 = tl.constexpr(0.000590027440945586)
_T19 = tl.constexpr(-0.00023912911424355248)
_T21 = tl.constexpr(9.691537956929451e-05)


@triton.jit
def tanh(x):
    """tanh within 2 ulp of float32 rounding (series near 0, exp elsewhere)."""
    ax = tl.abs(x)
    e = tl.exp(-2.0 * ax)
    large = (1.0 - e) / (1.0 + e)
    large = tl.where(x < 0, -large, large)
    x2 = x * x
    p = _T21
    p = p * x2 + _T19
    p = p * x2 + _T17
    p = p * x2 + _T15
    p = p * x2 + _T13
    p = p * x2 + _T11
    p = p * x2 + _T9
    p = p * x2 + _T7
    p = p * x2 + _T5
    p = p * x2 + _T3
    small = x + x * x2 * p
    return tl.where(ax < 0.55, small, large)


@triton.jit
def tanh_approx(x):
    """The GPU's tanh.approx.f32 (relative error under 2^-10.9, one MUFU op instead of ~30):
    for the tensor-core precisions, whose activations are stored in 16 bits or
    multiplied in tf32 anyway, as the CUDA kernels do. Not in the interpreter."""
    return tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f", [x], dtype=tl.float32, is_pure=True, pack=1)


@triton.jit
def tanh_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    """Elementwise tanh (for tests of the tanh above)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(out_ptr + offs, tanh(tl.load(x_ptr + offs, mask=mask, other=0.0)), mask=mask)


@triton.jit
def _dot(acc, a, b, DOT: tl.constexpr, EMULATE_BF16: tl.constexpr):
    if DOT == 0:
        acc += tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    elif DOT == 1:
        acc += tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="tf32")
    elif DOT == 2:
        acc += tl.dot(a.to(tl.float16), b.to(tl.float16))
    elif EMULATE_BF16:
        # The interpreter's bf16 dot is wrong (numpy has no bfloat16):
        # round to bf16, multiply exactly in float32.
        a16 = a.to(tl.bfloat16).to(tl.float32)
        acc += tl.dot(a16, b.to(tl.bfloat16).to(tl.float32), input_precision="ieee")
    else:
        acc += tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16))
    return acc


@triton.jit
def conv_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    out_ptr,
    N,
    H,
    W,
    C_IN,
    C_OUT,
    SCALE,
    SX_N,
    SX_C,
    SX_H,
    SX_W,
    SW_N,
    SW_C,
    SW_H,
    SW_W,
    SO_N,
    SO_C,
    SO_H,
    SO_W,
    KSIZE: tl.constexpr,
    SHUFFLE: tl.constexpr,
    CLAMP: tl.constexpr,
    DOT: tl.constexpr,
    EMULATE_BF16: tl.constexpr,
    TAP_MAJOR: tl.constexpr,
    FAST_TANH: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """One "same"-padded conv layer as an implicit GEMM: a BLOCK_M pixels x BLOCK_N channels tile per program.

    Strides, in elements, of the input, the weights (out, in, ky, kx) and the
    output (tanh layers; the pixel shuffle writes contiguous NCHW): any
    layout. Channels-last activations and weights (a channel stride of 1)
    make the A and B tiles contiguous along K: 16-byte loads. Offsets within
    one image are int32: the caller keeps each image under 2^31 elements.
    Epilogue: bias, then tanh (the hardware's if FAST_TANH), or (SHUFFLE) the
    pixel shuffle's store into the HR layout, clamped if CLAMP.
    """
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    HW = H * W
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = offs_m < N * HW
    img = (offs_m // HW).to(tl.int64)
    y = (offs_m % HW) // W
    x = offs_m % W
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < C_OUT
    KK: tl.constexpr = KSIZE * KSIZE
    PAD: tl.constexpr = KSIZE // 2

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if TAP_MAJOR:
        # Many channels: K runs over taps, and within a tap over blocks of
        # channels, in one loop (one loop is what Triton software-pipelines).
        c_steps = tl.cdiv(C_IN, BLOCK_K)
        for step in range(0, KK * c_steps):
            tap = step // c_steps
            offs_c = (step % c_steps) * BLOCK_K + tl.arange(0, BLOCK_K)
            c_ok = offs_c < C_IN
            iy = y + tap // KSIZE - PAD
            ix = x + tap % KSIZE - PAD
            p_ok = m_ok & (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
            pixel = img * SX_N + iy * SX_H + ix * SX_W
            a = tl.load(x_ptr + pixel[:, None] + offs_c[None, :] * SX_C, mask=p_ok[:, None] & c_ok[None, :], other=0.0)
            b = tl.load(
                w_ptr + offs_n[None, :] * SW_N + offs_c[:, None] * SW_C + (tap // KSIZE) * SW_H + (tap % KSIZE) * SW_W,
                mask=c_ok[:, None] & n_ok[None, :],
                other=0.0,
            )
            acc = _dot(acc, a, b, DOT, EMULATE_BF16)
    else:
        # Few channels (layer 1): K = (ci, ky, kx) flattened, so a block is not mostly padding.
        for k0 in range(0, C_IN * KK, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            k_ok = offs_k < C_IN * KK
            ci = offs_k // KK
            tap = offs_k % KK
            iy = y[:, None] + (tap // KSIZE)[None, :] - PAD
            ix = x[:, None] + (tap % KSIZE)[None, :] - PAD
            a_mask = m_ok[:, None] & k_ok[None, :] & (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
            a = tl.load(
                x_ptr + img[:, None] * SX_N + ci[None, :] * SX_C + iy * SX_H + ix * SX_W, mask=a_mask, other=0.0
            )
            b = tl.load(
                w_ptr
                + offs_n[None, :] * SW_N
                + ci[:, None] * SW_C
                + (tap // KSIZE)[:, None] * SW_H
                + (tap % KSIZE)[:, None] * SW_W,
                mask=k_ok[:, None] & n_ok[None, :],
                other=0.0,
            )
            acc = _dot(acc, a, b, DOT, EMULATE_BF16)

    acc += tl.load(b_ptr + offs_n, mask=n_ok, other=0.0)[None, :]
    mask = m_ok[:, None] & n_ok[None, :]
    if SHUFFLE:
        if CLAMP:  # NaN kept, as torch.clamp and the other kernels (the default drops it to a bound)
            acc = tl.minimum(
                tl.maximum(acc, 0.0, propagate_nan=tl.PropagateNan.ALL), 1.0, propagate_nan=tl.PropagateNan.ALL
            )
        rr = SCALE * SCALE
        co = offs_n // rr
        row = y[:, None] * SCALE + ((offs_n % rr) // SCALE)[None, :]
        col = x[:, None] * SCALE + (offs_n % SCALE)[None, :]
        out = ((img[:, None] * (C_OUT // rr) + co[None, :]) * (H * SCALE) + row) * (W * SCALE) + col
    else:
        if FAST_TANH:
            acc = tanh_approx(acc)
        else:
            acc = tanh(acc)
        out = img[:, None] * SO_N + offs_n[None, :] * SO_C + (y * SO_H + x * SO_W)[:, None]
    tl.store(out_ptr + out, acc.to(out_ptr.dtype.element_ty), mask=mask)


# Autotune lists, (BLOCK_M pixels, BLOCK_N channels, BLOCK_K, warps, stages), one per kind of
# layer; each compiles once per layer shape. ptxas spills none of them on sm_90 (tests/triton_aot.py
# checks every one, for every ESPCN layer and precision that can pick it).
CONFIGS: dict[str, list[tuple[int, int, int, int, int]]] = {
    # Tensor cores, many channels (layers 2 and 3): K = taps x channel blocks, cp.async-pipelined.
    "taps": [
        (64, 32, 32, 4, 3),
        (128, 32, 32, 4, 3),
        (128, 64, 64, 8, 3),
        (128, 16, 64, 4, 3),
        (128, 32, 64, 4, 4),
        (256, 32, 64, 8, 3),
    ],
    # Tensor cores, few channels (layer 1: K = 25, one step of 32; a K of 64 would be 61% padding).
    # BLOCK_N = 64 mostly, so that each pixel's 5x5 window is gathered by one program, not two.
    "gather": [
        (64, 64, 32, 4, 3),
        (128, 64, 32, 4, 3),
        (128, 64, 32, 8, 3),
        (256, 64, 32, 8, 3),
        (128, 32, 32, 4, 3),
        (256, 32, 32, 8, 3),
    ],
    # fp32 on FFMA: Triton holds a K slice of both operands in registers. These six spill
    # nothing with triton 3.6 or 3.8; (128, 32, 32, 4 warps) spilled in layer 3 on 3.6, and
    # K = 64 or 64 accumulators a thread spilled up to 880 bytes.
    "ffma": [
        (64, 32, 32, 4, 3),
        (128, 32, 32, 8, 3),
        (128, 16, 32, 4, 3),
        (256, 32, 32, 8, 3),
        (64, 64, 16, 4, 3),
        (128, 64, 16, 8, 3),
    ],
}


def config_family(precision: str, c_in: int) -> str:
    """Which autotune list a layer takes: ``CONFIGS``' key."""
    if precision == "fp32":
        return "ffma"
    return "taps" if tap_major(c_in) else "gather"


def gpu_configs(family: str) -> list[triton.Config]:
    """``CONFIGS[family]`` as Triton configurations."""
    return [
        triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=s)
        for m, n, k, w, s in CONFIGS[family]
    ]


# One autotuner per list, picked by the launcher from a plain dict (torch.compile traces the
# lookup; a prune callback would make Dynamo trace triton.Config's construction).
TUNED = {
    family: triton.autotune(configs=gpu_configs(family), key=["C_IN", "C_OUT", "KSIZE", "DOT", "SHUFFLE"])(conv_kernel)
    for family in CONFIGS
}


def fast_tanh(precision: str) -> bool:
    """Whether a layer in ``precision`` takes the hardware tanh (tensor-core precisions, compiled kernels)."""
    return precision != "fp32" and not INTERPRETED


def tap_major(c_in: int) -> bool:
    """Whether a layer loops over taps outside channel blocks (enough channels to fill a K block)."""
    return c_in >= 16


def fixed_blocks(c_out: int, c_in: int, ksize: int, precision: str) -> dict[str, int]:
    """The configuration when not autotuning (4 warps, 3 stages): few large programs in the
    interpreter (N covers every channel); on a GPU, one from the middle of the layer's list."""
    n = max(16, triton.next_power_of_2(c_out))
    k = c_in if tap_major(c_in) else c_in * ksize * ksize
    if INTERPRETED:
        return {"BLOCK_M": 512, "BLOCK_N": n, "BLOCK_K": min(64, max(16, triton.next_power_of_2(k)))}
    if precision == "fp32":  # FFMA with 4 warps: a shape that spills nothing (see CONFIGS)
        return {"BLOCK_M": 64, "BLOCK_N": min(n, 32), "BLOCK_K": 32}
    return {"BLOCK_M": 128, "BLOCK_N": min(n, 64), "BLOCK_K": 32}
