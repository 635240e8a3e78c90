"""An ESPCN whose forward is the CPU kernels' reduced-precision arithmetic (:mod:`.reduced_precision`).

Quantization-aware training runs it with ``straight_through=True`` (gradients
pass the roundings to the model's float parameters); validation and the
evaluation run it without, optionally in float64 as a reference.
"""

from __future__ import annotations

import torch
from torch import nn

from . import reduced_precision
from .model import ESPCN


def model_weights(model: ESPCN) -> tuple[torch.Tensor, ...]:
    """``(w1, b1, w2, b2, w3, b3)`` of ``model``: the parameters themselves (gradients reach them)."""
    first, second, last = model.feature_maps[0], model.feature_maps[2], model.sub_pixel[0]
    return (first.weight, first.bias, second.weight, second.bias, last.weight, last.bias)


class PrecisionESPCN(nn.Module):
    """``model`` computed as :func:`reduced_precision.forward` does in ``precision``.

    Args:
        model: the float ESPCN whose parameters are used (and trained, with ``straight_through``).
        precision: one of :data:`reduced_precision.CPU_PRECISIONS`.
        straight_through: identity gradients through the roundings (quantization-aware training).
        dtype: compute in this dtype (float64 for a reference); the output is returned in it.
            ``None``: the input's dtype.
    """

    def __init__(
        self, model: ESPCN, precision: str, straight_through: bool = False, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        reduced_precision.check_cpu_precision(precision)
        self.model = model
        self.precision = precision
        self.straight_through = straight_through
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, H, W)`` LR -> ``(N, 1, H*r, W*r)`` HR, not clamped (as :class:`ESPCN`)."""
        if self.dtype is not None:
            x = x.to(self.dtype)
        return reduced_precision.forward(
            x,
            model_weights(self.model),
            self.model.scale,
            self.precision,
            self.straight_through,
            self.model.a1_ranges if self.precision == "int8" else None,
        )
