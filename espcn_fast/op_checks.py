"""The fused ops' argument checks that decide the output's shape, in Python and in the C++ kernels' words
(``csrc/checks.cpp``): one set for the fake kernels, which ``torch.compile`` traces, and for the Triton
ops, so that every implementation of an op fails alike and a traced call fails as an eager one does.

``torch._check`` raises ``RuntimeError`` on concrete values, as the C++ checks do, and records a guard
on symbolic ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# espcn_forward's arithmetic: "fp32" everywhere; on CUDA also "tf32", "fp16" and "bf16" on the tensor cores;
# on the CPU "bf16" and "int8" on dot-product instructions (AVX512-BF16; AVX512-VNNI or AVX-VNNI).
PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8")


def check_precision(op: str, precision: str) -> None:
    """A precision of ``PRECISIONS``."""
    torch._check(
        precision in PRECISIONS,
        lambda: f"{op}: unknown precision '{precision}'; choose {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}",
    )


def check_a1_ranges(op: str, precision: str, a1_ranges: torch.Tensor | None, x: torch.Tensor, channels: int) -> None:
    """``a1_ranges``: absent, or with precision int8 a float32 ``(channels,)`` tensor on ``x``'s device
    (its values, in (0, 1], are checked by the kernel that reads them)."""
    if a1_ranges is None:
        return
    torch._check(precision == "int8", lambda: f"{op}: a1_ranges applies to precision 'int8' only")
    torch._check(
        a1_ranges.dim() == 1 and a1_ranges.shape[0] == channels,
        lambda: f"{op}: a1_ranges must have shape [{channels}] (w1's output channels), got {list(a1_ranges.shape)}",
    )
    torch._check(a1_ranges.dtype == torch.float32, lambda: f"{op}: a1_ranges must be float32, got {a1_ranges.dtype}")
    torch._check(
        a1_ranges.device == x.device, lambda: f"{op}: a1_ranges is on {a1_ranges.device} but x is on {x.device}"
    )


def check_input(op: str, x: torch.Tensor) -> None:
    """A 4-D ``(N, C, H, W)`` image batch with at least one pixel per image."""
    torch._check(
        x.dim() == 4, lambda: f"{op}: x must be a 4-D (N, C, H, W) tensor, got {x.dim()}-D shape {list(x.shape)}"
    )
    torch._check(
        x.shape[2] >= 1 and x.shape[3] >= 1, lambda: f"{op}: x must have H and W >= 1, got shape {list(x.shape)}"
    )


def check_layers(op: str, x: torch.Tensor, layers: Sequence[tuple[str, torch.Tensor]], scale: int | None) -> None:
    """``x`` through convolution weights ``layers`` (name, weight) in turn, the last one's output
    channels then pixel-shuffled by ``scale`` (None: no shuffle)."""
    check_input(op, x)
    channels = x.shape[1]
    for name, w in layers:
        # (Defaults bind this layer's values into the messages.)
        torch._check(
            w.dim() == 4,
            lambda name=name, w=w: (
                f"{op}: {name} must be 4-D (out_channels, in_channels, k, k), got shape {list(w.shape)}"
            ),
        )
        torch._check(
            w.shape[1] == channels,
            lambda name=name, w=w, c=channels: (
                f"{op}: {name} expects {w.shape[1]} input channel(s) but its input has {c}"
            ),
        )
        channels = w.shape[0]
    if scale is not None:
        torch._check(scale >= 1, lambda: f"{op}: scale must be >= 1, got {scale}")
        name = layers[-1][0]
        torch._check(
            channels % scale == 0 and (channels // scale) % scale == 0,
            lambda: (
                f"{op}: {name} has {channels} output channels, not a multiple of scale^2 = "
                f"{scale * scale if scale < 2**31 else f'{scale}^2'}"
            ),
        )
