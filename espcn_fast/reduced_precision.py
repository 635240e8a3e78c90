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
  fixed range [-1, 1] of tanh); the weights of layers 2 and 3 as int8 with
  one scale per output channel, ``max |w| / 127``; int32 sums of the integer
  products, then scaled back to float32 and the bias added. Optionally
  (``a1_ranges``, which the int8 weight files carry) each channel c of layer
  1's output has its own range ``r_c`` in (0, 1]: it is stored as
  ``clamp(round(a * 127 / r_c), -127, 127)``, a finer grid for the many
  channels whose tanh never nears +-1, and layer 2's weights are quantized
  as ``w * r_c`` (input channel c), so that the int32 sums stay exact.
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


def check_a1_ranges(ranges: torch.Tensor, channels: int) -> None:
    """ValueError unless ``ranges`` holds ``channels`` floating-point values, each finite and in (0, 1]."""
    if not isinstance(ranges, torch.Tensor) or not ranges.is_floating_point() or tuple(ranges.shape) != (channels,):
        what = (
            f"{ranges.dtype} shape {list(ranges.shape)}" if isinstance(ranges, torch.Tensor) else type(ranges).__name__
        )
        raise ValueError(
            f"a1_ranges must be a floating-point tensor of shape [{channels}] (layer 1's channels), got {what}"
        )
    r = ranges.detach().to(torch.float32)
    if not bool(((r > 0) & (r <= 1)).all()):
        raise ValueError("a1_ranges must lie in (0, 1] (ranges of tanh outputs), got values outside or NaN")


def code_multipliers(ranges: torch.Tensor | None, channels: int) -> torch.Tensor:
    """Each channel's ``127 / r`` in float32 (as the kernels divide): a tanh output a is stored as
    ``round(a * m)``. ``ranges=None``: 127 for every channel."""
    if ranges is None:
        return torch.full((channels,), float(ACTIVATION_LEVELS))
    return ACTIVATION_LEVELS / ranges.detach().to(torch.float32)


def fake_quantize_activation(
    a: torch.Tensor, straight_through: bool = False, multipliers: torch.Tensor | None = None
) -> torch.Tensor:
    """A tanh output on the int8 grid ``k / m``, k in [-127, 127] (rounded in float32, half to even),
    with ``m`` 127 or, per channel (dim 1), ``multipliers`` (:func:`code_multipliers`)."""
    m = torch.tensor(float(ACTIVATION_LEVELS)) if multipliers is None else multipliers.to(torch.float32)[:, None, None]
    k = torch.round(a.detach().to(torch.float32) * m).clamp_(-ACTIVATION_LEVELS, ACTIVATION_LEVELS)
    return _straight_through(a, k.to(a.dtype) / m.to(a.dtype), straight_through)


def int8_layer2_weight(w2: torch.Tensor, ranges: torch.Tensor | None, straight_through: bool = False) -> torch.Tensor:
    """int8's layer-2 weight as it multiplies layer 1's outputs ``k / m``: ``w * r`` on the int8 grid
    (:func:`ranged_weight_on_codes`)."""
    if ranges is None:
        return fake_quantize_weight(w2, straight_through)
    return ranged_weight_on_codes(
        fake_quantize_weight(w2 * ranges.to(w2.dtype)[None, :, None, None], straight_through), ranges
    )


def ranged_weight_on_codes(wq: torch.Tensor, ranges: torch.Tensor) -> torch.Tensor:
    """A layer-2 weight quantized as ``w * r`` (``q * s``), as it multiplies layer 1's outputs ``k / m``:
    times ``m / 127``, so that each product is ``q * s * k / 127``, the kernels' exact int32 sum times
    their scale."""
    m = code_multipliers(ranges, wq.shape[1]).to(wq.dtype)[None, :, None, None]
    return wq * (m / ACTIVATION_LEVELS)


def round_bf16(x: torch.Tensor, straight_through: bool = False) -> torch.Tensor:
    """``x`` rounded to bfloat16 (to nearest, ties to even), in ``x``'s dtype."""
    return _straight_through(x, x.detach().to(torch.bfloat16).to(x.dtype), straight_through)


def forward(
    x: torch.Tensor,
    weights: tuple[torch.Tensor, ...] | list[torch.Tensor],
    scale: int,
    precision: str,
    straight_through: bool = False,
    a1_ranges: torch.Tensor | None = None,
) -> torch.Tensor:
    """ESPCN's forward as the CPU kernels compute it in ``precision``, in the dtype of ``x``.

    Args:
        x: ``(N, 1, H, W)`` LR batch (float64 for a reference, float32 for training).
        weights: ``(w1, b1, w2, b2, w3, b3)`` float weights (as in the state dict).
        scale: the pixel shuffle's factor.
        precision: one of :data:`CPU_PRECISIONS`.
        straight_through: gradients pass the roundings unchanged (quantization-aware training).
        a1_ranges: int8 only: per-channel ranges of layer 1's outputs (``None``: 1, tanh's own).
    """
    check_cpu_precision(precision)
    if a1_ranges is not None:
        if precision != "int8":
            raise ValueError(f"a1_ranges applies to precision 'int8' only, not {precision!r}")
        check_a1_ranges(a1_ranges, weights[0].shape[0])
    w1, b1, w2, b2, w3, b3 = (t.to(x.dtype) for t in weights)
    st = straight_through
    act1 = act2 = lambda a: a  # noqa: E731
    if precision == "bf16":
        w1, w2, w3 = (round_bf16(w, st) for w in (w1, w2, w3))
        act1 = act2 = lambda a: round_bf16(a, st)  # noqa: E731
    elif precision == "int8":
        w2, w3 = int8_layer2_weight(w2, a1_ranges, st), fake_quantize_weight(w3, st)
        m1 = None if a1_ranges is None else code_multipliers(a1_ranges, w1.shape[0])
        act1 = lambda a: fake_quantize_activation(a, st, m1)  # noqa: E731
        act2 = lambda a: fake_quantize_activation(a, st)  # noqa: E731
    y1 = int8_layer1(x, w1, b1, st) if precision == "int8" else F.conv2d(x, w1, b1, padding=w1.shape[-1] // 2)
    a1 = act1(torch.tanh(y1))
    a2 = act2(torch.tanh(F.conv2d(a1, w2, b2, padding=w2.shape[-1] // 2)))
    return F.pixel_shuffle(F.conv2d(a2, w3, b3, padding=w3.shape[-1] // 2), scale)
