"""The reference ESPCN (Shi et al. 2016), layer for layer as the paper and ESPCN-PyTorch.

Every faster backend of this project is tested against this module. One
difference from ESPCN-PyTorch's module: its forward also clamps to [0, 1]; this
one returns the network's raw output, and the clamp is where an image is made
(the image and video paths, ``FastESPCN(clamp=True)``, the metrics' rounding).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .validation import check_image_batch, check_scale

# What the image, evaluation and video code runs: anything that maps an LR Y
# batch (N, 1, H, W) on [0, 1] to its HR Y, as ESPCN and FastESPCN do.
SuperResolver = Callable[[torch.Tensor], torch.Tensor]
# The state-dict key (and buffer) of the int8 layer-1 ranges.
A1_RANGES_KEY = "a1_ranges"


class ESPCN(nn.Module):
    """Conv 5x5 -> tanh -> conv 3x3 -> tanh -> conv 3x3 -> pixel shuffle.

    Args:
        scale: upscaling factor r (an integer >= 1; 2, 3 and 4 are tested).
        in_channels: image channels in (1: the Y channel).
        out_channels: image channels out.
        channels: width of the first layer (the second is half of it).

    Input ``(N, in_channels, H, W)`` floats in [0, 1]; output
    ``(N, out_channels, H*r, W*r)``, not clamped. State-dict keys are those of
    ESPCN-PyTorch (``feature_maps.0.weight`` ... ``sub_pixel.0.bias``).
    """

    def __init__(self, scale: int, in_channels: int = 1, out_channels: int = 1, channels: int = 64) -> None:
        super().__init__()
        self.scale = check_scale(scale)
        self.in_channels = in_channels
        self.out_channels = out_channels
        hidden = channels // 2
        self.feature_maps = nn.Sequential(
            nn.Conv2d(in_channels, channels, kernel_size=5, padding=2),
            nn.Tanh(),
            nn.Conv2d(channels, hidden, kernel_size=3, padding=1),
            nn.Tanh(),
        )
        self.sub_pixel = nn.Sequential(
            nn.Conv2d(hidden, out_channels * scale * scale, kernel_size=3, padding=1),
            nn.PixelShuffle(scale),
        )
        # The CPU int8 arithmetic's per-channel ranges of layer 1's outputs, which the int8 weight
        # files carry (reduced_precision); None: the full range of tanh. Not used by this forward.
        self.register_buffer(A1_RANGES_KEY, None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """ESPCN-PyTorch's initialisation: N(0, sqrt(2 / (out * k * k))), N(0, 0.001) last, zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                if module is self.sub_pixel[0]:
                    nn.init.normal_(module.weight, 0.0, 0.001)
                else:
                    fan_out = module.out_channels * module.weight[0, 0].numel()
                    nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` LR -> ``(N, C, H*r, W*r)`` HR (no clamp: the reference's raw output)."""
        check_image_batch(x, self.in_channels, "ESPCN")
        weight = self.feature_maps[0].weight
        if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(
                f"ESPCN: x is {x.dtype} but the parameters are {weight.dtype}; convert one "
                f"(model.to({x.dtype}) or x.to({weight.dtype}))"
            )
        return self.sub_pixel(self.feature_maps(x))

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        """As ``nn.Module.state_dict``, with ``a1_ranges`` (when set) after the weights rather than
        first, so the six weights keep their ESPCN-PyTorch order."""
        state = super().state_dict(*args, **kwargs)
        key = kwargs.get("prefix", "") + A1_RANGES_KEY
        if key in state:
            state[key] = state.pop(key)
        return state

    def load_state_dict(
        self,
        state_dict: Mapping[str, Any],
        strict: bool = True,  # type: ignore[override]
        assign: bool = False,
    ) -> Any:
        """Load weights, with a clear error when they belong to another scale or shape.

        An ``a1_ranges`` entry (int8 weight files) becomes the model's ``a1_ranges``; without one the
        model has none.
        """
        from .reduced_precision import check_a1_ranges
        from .weights import WeightsError, check_state_dict

        state = dict(state_dict)
        ranges = state.pop(A1_RANGES_KEY, None)
        if ranges is not None:
            try:
                check_a1_ranges(ranges, self.feature_maps[0].out_channels)
            except ValueError as exc:
                raise WeightsError(f"weights: {exc}") from None
        kept, self.a1_ranges = self.a1_ranges, None
        try:
            check_state_dict(state, self, strict)
            result = super().load_state_dict(state, strict=strict, assign=assign)
        except BaseException:
            self.a1_ranges = kept
            raise
        if ranges is not None:
            device = self.feature_maps[0].weight.device
            self.a1_ranges = ranges.detach().to(device=device, dtype=torch.float32).clone()
        return result

    @classmethod
    def from_pretrained(cls, scale: int, device: str | torch.device = "cpu", precision: str = "fp32") -> ESPCN:
        """The weights shipped in the package, trained on T91 (x2, x3, x4).

        ``precision="int8"`` loads the weights fine-tuned for the CPU kernels' int8 arithmetic
        (still a float model here: run it as int8 with ``PrecisionESPCN(model, "int8")`` or
        the kernels); any other precision the float weights.
        """
        from .weights import load_weights, pretrained_path

        model = cls(scale)
        model.load_state_dict(load_weights(pretrained_path(scale, precision)))
        return model.to(device).eval()

    @classmethod
    def from_file(cls, path: str | os.PathLike, scale: int | None = None) -> ESPCN:
        """Load a ``.safetensors`` file or an ESPCN-PyTorch checkpoint (``.pth``/``.pth.tar``).

        The shape is read from the weights: input channels and width from the
        first layer, as many output channels as input ones (ESPCN-PyTorch's
        RGB models too), and the scale from the last layer when not given.
        """
        from .weights import load_weights, scale_of

        state = load_weights(path)
        first = state.get("feature_maps.0.weight")
        if isinstance(first, torch.Tensor) and first.dim() == 4:
            channels, in_channels = int(first.shape[0]), int(first.shape[1])
        else:  # load_state_dict's check names what is missing or wrong
            channels, in_channels = 64, 1
        scale = scale if scale is not None else scale_of(state, out_channels=in_channels)
        model = cls(scale, in_channels=in_channels, out_channels=in_channels, channels=channels)
        model.load_state_dict(state)
        return model.eval()
