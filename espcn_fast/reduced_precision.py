"""The arithmetic of the CPU kernels' reduced precisions, written once in PyTorch.

The one definition of what ``precision="bf16"`` and ``precision="int8"`` compute
on the CPU: the C++ kernels (``csrc/cpu/dot_rows.h``) implement it, the tests
compare them with :func:`forward` in float64, and quantization-aware training
runs :func:`forward` with ``straight_through=True``.

- ``bf16``: the three weights rounded to bfloat16 (biases stay float32); layer
  1 reads the float32 input; the activations after each tanh are rounded to
  bfloat16; products summed in float32.
- ``int8``: layer 1 in 16-bit fixed point (one input channel, and the input
  is not on an 8-bit grid): the input, which must lie in [-1, 1], as
  ``round(32767 x)``, the weights as integers in [-L, L] with one scale per
  output channel, ``max |w| / L``, where ``L = min(32767, 65536 // k^2)`` for
  a k x k kernel so that the int32 sum of the products cannot overflow; the
  activations after each tanh stored as ``round(127 a)`` (symmetric, on the
  fixed range [-1, 1] of tanh, so no calibration); the weights of layers 2
  and 3 as int8 with one scale per output channel, ``max |w| / 127``; int32
  sums of the integer products, then scaled back to float32 and the bias
  added.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The precisions the CPU kernels compute in.
CPU_PRECISIONS = ("fp32", "bf16", "int8")
# tanh's output a is stored as round(ACTIVATION_LEVELS * a) in int8.
ACTIVATION_LEVELS = 127
WEIGHT_LEVELS = 127
# int8's layer 1: the input x in [-1, 1] as round(INPUT_LEVELS * x) in int16.
INPUT_LEVELS = 32767


def layer1_levels(kernel: int) -> int:
    """int8's layer-1 weight levels for a ``kernel`` x ``kernel`` layer: ``kernel^2`` products of at most
    32767 x L each stay below 2^31."""
    return min(32767, 65536 // (kernel * kernel))


def check_cpu_precision(precision: str) -> None:
    """ValueError unless ``precision`` is one of :data:`CPU_PRECISIONS`."""
    if precision not in CPU_PRECISIONS:
        raise ValueError(f"unknown CPU precision {precision!r}; choose one of {', '.join(CPU_PRECISIONS)}")


def _straight_through(x: torch.Tensor, rounded: torch.Tensor, straight_through: bool) -> torch.Tensor:
    """``rounded`` in the forward pass; with ``straight_through``, the identity's gradient in the backward."""
    return x + (rounded - x).detach() if straight_through else rounded


def weight_scales(w: torch.Tensor, levels: int = WEIGHT_LEVELS) -> torch.Tensor:
    """Per-output-channel scales of a ``(C_out, C_in, k, k)`` weight: ``max |w| / levels`` in float32
    (1 for an all-zero channel)."""
    m = w.detach().to(torch.float32).abs().amax(dim=(1, 2, 3))
    return torch.where(m > 0, m / levels, torch.ones_like(m))


def quantize_weight(w: torch.Tensor, levels: int = WEIGHT_LEVELS) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q, scales)``: integers ``q`` in [-levels, levels] (int8 for the default 127, else int16) with
    ``w ~ q * scales[:, None, None, None]``.

    Computed in float32 and rounded half to even, exactly as the C++ kernels do.
    """
    s = weight_scales(w, levels)
    q = torch.round(w.detach().to(torch.float32) / s[:, None, None, None]).clamp_(-levels, levels)
    return q.to(torch.int8 if levels <= 127 else torch.int16), s


def fake_quantize_weight(w: torch.Tensor, straight_through: bool = False, levels: int = WEIGHT_LEVELS) -> torch.Tensor:
    """``w`` on its grid of ``levels`` per sign (same dtype as ``w``)."""
    q, s = quantize_weight(w, levels)
    return _straight_through(w, (q.to(torch.float32) * s[:, None, None, None]).to(w.dtype), straight_through)


def fake_quantize_input(x: torch.Tensor) -> torch.Tensor:
    """int8's layer-1 input on its 16-bit grid ``k / 32767``; ValueError outside [-1, 1]."""
    if x.numel() and not bool((x.abs() <= 1).all()):
        raise ValueError("precision 'int8' reads its input as 16-bit fixed point on [-1, 1]; x holds values outside")
    k = torch.round(x.detach().to(torch.float32) * INPUT_LEVELS)  # rounded in float32, as the kernels do
    return k.to(x.dtype) / INPUT_LEVELS  # in x's dtype: exact for a float64 reference


def int8_layer1(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, straight_through: bool = False) -> torch.Tensor:
    """int8's layer 1 before its tanh: the 16-bit input and weights, summed exactly (in ``x``'s dtype)."""
    w = fake_quantize_weight(w1, straight_through, layer1_levels(w1.shape[-1]))
    return F.conv2d(fake_quantize_input(x), w, b1, padding=w1.shape[-1] // 2)


def fake_quantize_activation(a: torch.Tensor, straight_through: bool = False) -> torch.Tensor:
    """A tanh output on the int8 grid ``k / 127``, k in [-127, 127] (rounded in float32, half to even)."""
    k = torch.round(a.detach().to(torch.float32) * ACTIVATION_LEVELS).clamp_(-ACTIVATION_LEVELS, ACTIVATION_LEVELS)
    return _straight_through(a, (k / ACTIVATION_LEVELS).to(a.dtype), straight_through)


def round_bf16(x: torch.Tensor, straight_through: bool = False) -> torch.Tensor:
    """``x`` rounded to bfloat16 (to nearest, ties to even), in ``x``'s dtype."""
    return _straight_through(x, x.detach().to(torch.bfloat16).to(x.dtype), straight_through)


def forward(
    x: torch.Tensor,
    weights: tuple[torch.Tensor, ...] | list[torch.Tensor],
    scale: int,
    precision: str,
    straight_through: bool = False,
) -> torch.Tensor:
    """ESPCN's forward as the CPU kernels compute it in ``precision``, in the dtype of ``x``.

    Args:
        x: ``(N, 1, H, W)`` LR batch (float64 for a reference, float32 for training).
        weights: ``(w1, b1, w2, b2, w3, b3)`` float weights (as in the state dict).
        scale: the pixel shuffle's factor.
        precision: one of :data:`CPU_PRECISIONS`.
        straight_through: gradients pass the roundings unchanged (quantization-aware training).
    """
    check_cpu_precision(precision)
    w1, b1, w2, b2, w3, b3 = (t.to(x.dtype) for t in weights)
    st = straight_through
    if precision == "bf16":
        w1, w2, w3 = (round_bf16(w, st) for w in (w1, w2, w3))
        act = lambda a: round_bf16(a, st)  # noqa: E731
    elif precision == "int8":
        w2, w3 = fake_quantize_weight(w2, st), fake_quantize_weight(w3, st)
        act = lambda a: fake_quantize_activation(a, st)  # noqa: E731
    else:
        act = lambda a: a  # noqa: E731
    y1 = int8_layer1(x, w1, b1, st) if precision == "int8" else F.conv2d(x, w1, b1, padding=w1.shape[-1] // 2)
    a1 = act(torch.tanh(y1))
    a2 = act(torch.tanh(F.conv2d(a1, w2, b2, padding=w2.shape[-1] // 2)))
    return F.pixel_shuffle(F.conv2d(a2, w3, b3, padding=w3.shape[-1] // 2), scale)
