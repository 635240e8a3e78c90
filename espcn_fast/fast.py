"""``FastESPCN``: the reference ESPCN's drop-in for inference, on the fastest backend."""

from __future__ import annotations

import torch

from . import backends, ops
from .model import ESPCN
from .validation import check_image_batch

PRECISIONS = ("fp32",)
_CPU_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class FastESPCN(ESPCN):
    """ESPCN for inference on fused kernels; same parameters and state dict as :class:`ESPCN`.

    Args:
        scale: upscaling factor.
        backend: ``"auto"`` (the fastest available for the input's device, see
            :mod:`espcn_fast.backends`), ``"cpu"``, ``"cuda"``, ``"triton"`` or
            ``"torch"`` (the reference layers).
        precision: ``"fp32"``.
        clamp: clamp the output to [0, 1] inside the kernel.

    Parameters are created with ``requires_grad=False``. When autograd is
    wanted (grad mode on and the input or a parameter requires grad), the
    forward runs the reference layers instead, so gradients are correct.
    The CPU backend computes in float32; float16/bfloat16 inputs are upcast
    and the result cast back. float64 inputs run on the reference layers under
    ``"auto"`` (an error with ``"cpu"``).
    """

    def __init__(
        self,
        scale: int,
        backend: str = "auto",
        precision: str = "fp32",
        in_channels: int = 1,
        out_channels: int = 1,
        channels: int = 64,
        clamp: bool = False,
    ) -> None:
        super().__init__(scale, in_channels, out_channels, channels)
        if backend not in backends.BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(backends.BACKENDS)}")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        if backend != "auto":
            reason = backends.unavailable_reason(backend)
            if reason is not None:
                raise RuntimeError(f"backend {backend!r} is not available: {reason}")
        self.backend = backend
        self.precision = precision
        self.clamp = clamp
        self.requires_grad_(False)

    @classmethod
    def from_pretrained(cls, scale: int, device: str | torch.device = "cpu", **kwargs) -> "FastESPCN":  # type: ignore[override]
        """The shipped weights (see :meth:`ESPCN.from_pretrained`) on the fast path."""
        return cls.from_reference(ESPCN.from_pretrained(scale), **kwargs).to(device)

    @classmethod
    def from_reference(cls, model: ESPCN, **kwargs) -> "FastESPCN":
        """A FastESPCN with the weights, scale and shape of a reference ``model``."""
        fast = cls(model.scale, in_channels=model.in_channels, out_channels=model.out_channels,
                   channels=model.feature_maps[0].out_channels, **kwargs)
        fast.load_state_dict(model.state_dict())
        first = next(model.parameters())
        return fast.to(first.device, first.dtype).eval()

    def extra_repr(self) -> str:
        return f"scale={self.scale}, backend={self.backend!r}, precision={self.precision!r}, clamp={self.clamp}"

    def backend_for(self, x: torch.Tensor) -> str:
        """The backend that :meth:`forward` uses for ``x``."""
        wants_grad = torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in self.parameters())
        )
        if wants_grad:
            return "torch"
        if self.backend == "auto" and x.device.type == "cpu" and x.dtype not in _CPU_DTYPES:
            return "torch"
        return backends.resolve(self.backend, x.device)

    def _weights(self, dtype: torch.dtype) -> list[torch.Tensor]:
        convs = (self.feature_maps[0], self.feature_maps[2], self.sub_pixel[0])
        return [t.to(dtype) for c in convs for t in (c.weight, c.bias)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, self.in_channels, "FastESPCN")
        backend = self.backend_for(x)
        if backend == "torch":
            out = self.sub_pixel(self.feature_maps(x))
            return out.clamp(0, 1) if self.clamp else out
        if backend == "cpu":
            if x.dtype not in _CPU_DTYPES:
                raise TypeError(
                    f"backend 'cpu' computes in float32 and takes float32/float16/bfloat16 inputs, got {x.dtype}; "
                    "use backend='torch' for float64"
                )
            out = ops.espcn_forward(x.float(), *self._weights(torch.float32), self.scale, self.clamp)
            return out.to(x.dtype)
        raise RuntimeError(f"backend {backend!r} is not implemented yet")  # pragma: no cover
