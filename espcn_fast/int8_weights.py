"""The int8 weight files: float weights plus the per-channel int8 scales of layers 2 and 3.

The shipped ``espcn_x<r>_int8.safetensors`` hold the float parameters that
quantization-aware training left (their int8 quantization is the model) and,
beside them, the scales :func:`reduced_precision.weight_scales` gives them, so
that a reader that wants the integers need not recompute the scales. On
loading, the scales are checked against the weights (a file whose weights were
edited afterwards is refused) and dropped, so that ``ESPCN.load_state_dict``
takes the rest. The files also hold ``a1_ranges``, the per-channel ranges of
layer 1's outputs; layer 2's scales are then those of its weights times them
(:func:`reduced_precision.int8_layer2_weight`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .model import A1_RANGES_KEY
from .reduced_precision import weight_scales

# Stored scale -> the weight it belongs to (layers 2 and 3; layer 1 stays float32).
SCALE_KEYS = {
    "feature_maps.2.weight_scale": "feature_maps.2.weight",
    "sub_pixel.0.weight_scale": "sub_pixel.0.weight",
}


class ScaleMismatchError(ValueError):
    """Stored int8 scales that are not those of the stored weights, or one without its weight."""


def _quantized_weight(state: Mapping[str, torch.Tensor], weight_key: str) -> torch.Tensor:
    """The float32 weight the int8 kernels quantize: layer 2's times ``a1_ranges`` (input channels)
    when the state has them."""
    w = state[weight_key].to(torch.float32)
    ranges = state.get(A1_RANGES_KEY)
    if weight_key == "feature_maps.2.weight" and ranges is not None:
        w = w * ranges.to(torch.float32)[None, :, None, None]
    return w


def add_weight_scales(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with the int8 scales of layers 2 and 3 added (float32, one per output channel)."""
    out = dict(state)
    for scale_key, weight_key in SCALE_KEYS.items():
        out[scale_key] = weight_scales(_quantized_weight(state, weight_key))
    return out


def strip_weight_scales(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` without the stored scales, after checking each equals that of its weight (bit for bit).

    A state without scales is returned unchanged (the float weight files).
    """
    out = dict(state)
    for scale_key, weight_key in SCALE_KEYS.items():
        if scale_key not in out:
            continue
        stored = out.pop(scale_key)
        if weight_key not in out:
            raise ScaleMismatchError(f"{scale_key} is stored but its weight {weight_key} is missing")
        expected = weight_scales(_quantized_weight(out, weight_key))
        # Exact: the kernels recompute the scales from the float weights, so any difference is a wrong file.
        if stored.shape != expected.shape or not torch.equal(stored.to(torch.float32), expected):
            raise ScaleMismatchError(
                f"{scale_key} does not hold the int8 scales of {weight_key} (max |w| / 127 per output channel): "
                "the weights or the scales were changed after the file was made"
            )
    return out
