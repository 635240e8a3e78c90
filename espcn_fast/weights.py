"""Reading and checking ESPCN weight files: safetensors, or ESPCN-PyTorch checkpoints."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from .atomic_write import replacing
from .int8_weights import ScaleMismatchError, strip_weight_scales

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"

# Keys of the reference model, in ESPCN-PyTorch's naming.
KEYS = (
    "feature_maps.0.weight",
    "feature_maps.0.bias",
    "feature_maps.2.weight",
    "feature_maps.2.bias",
    "sub_pixel.0.weight",
    "sub_pixel.0.bias",
)


class WeightsError(ValueError):
    """A weights file that can't be read, or weights that don't fit the model."""


def pretrained_path(scale: int, precision: str = "fp32") -> Path:
    """Path of the shipped weights for ``scale`` and the arithmetic they will run in; a clear error if
    there are none.

    ``precision="int8"`` gives the weights fine-tuned for the CPU kernels' int8 arithmetic
    (``espcn_x<r>_int8.safetensors``); every other precision the float ones (bf16 loses too
    little to need its own).
    """
    suffix = "_int8" if precision == "int8" else ""
    path = PRETRAINED_DIR / f"espcn_x{scale}{suffix}.safetensors"
    if not path.is_file():
        shipped = sorted(p.stem for p in PRETRAINED_DIR.glob("espcn_x*.safetensors"))
        what = f"scale {scale}" + (f" in {precision}" if suffix else "")
        raise WeightsError(f"no shipped weights for {what}; the package has: {', '.join(shipped) or 'none'}")
    return path


def _strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # DistributedDataParallel and torch.compile wrap the keys; users shouldn't care.
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a ``torch.save`` file.

    ``torch.save`` files are loaded with ``weights_only=True`` (no arbitrary
    pickles). ESPCN-PyTorch checkpoints (a dict with ``state_dict``) are
    unwrapped. The int8 scales of the int8 weight files are checked against
    the weights and dropped (:mod:`.int8_weights`). Errors name the file and
    what is wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the libraries raise many types for a corrupt file
        raise WeightsError(f"cannot read weights file {path}: it is corrupt or not a weights file ({exc})") from None
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise WeightsError(f"weights file {path} does not hold a state dict of tensors")
    try:
        _check_entries(state)
    except WeightsError as exc:
        raise WeightsError(f"weights file {path} does not hold a state dict of tensors: {exc}") from None
    try:
        _check_finite(state)
    except WeightsError as exc:
        raise WeightsError(f"weights file {path} is unusable: {exc}") from None
    try:
        return strip_weight_scales(_strip_prefixes(state))
    except ScaleMismatchError as exc:
        raise WeightsError(f"weights file {path} is unusable: {exc}") from None


def _check_entries(state: Mapping) -> None:
    """Names as strings, values as tensors: what every later check reads."""
    for key, value in state.items():
        if not isinstance(key, str):
            raise WeightsError(f"key {key!r} is a {type(key).__name__}, not a parameter name")
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{key} is a {type(value).__name__}, not a tensor")


def _check_finite(state: Mapping[str, torch.Tensor]) -> None:
    """A NaN or infinite weight makes every output pixel NaN (black once rounded): refused, naming the tensor."""
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise WeightsError(f"{key} holds {bad} NaN or infinite value(s) of {value.numel()}")


def scale_of(state: Mapping[str, torch.Tensor], out_channels: int = 1) -> int:
    """The upscaling factor that a state dict was trained for."""
    if "sub_pixel.0.weight" not in state:
        raise WeightsError("these are not ESPCN weights: 'sub_pixel.0.weight' is missing")
    w = state["sub_pixel.0.weight"]
    if not isinstance(w, torch.Tensor) or w.dim() != 4:
        raise WeightsError(
            f"sub_pixel.0.weight has shape {tuple(getattr(w, 'shape', ()))}, not a 4-D convolution "
            "weight: not ESPCN weights"
        )
    n = w.shape[0] // out_channels
    r = math.isqrt(n)
    if r * r != n:
        raise WeightsError(f"sub_pixel.0.weight has {n} outputs, not a square number: not ESPCN weights")
    return r


def check_state_dict(state: Mapping[str, torch.Tensor], model: torch.nn.Module, strict: bool = True) -> None:
    """Raise :class:`WeightsError` naming the mismatch, before torch's generic error.

    ``strict=False`` (as ``load_state_dict``'s) allows missing and unexpected
    keys; the shapes of the keys present are still checked.
    """
    _check_entries(state)
    _check_finite(state)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if strict and (missing or unexpected):
        raise WeightsError(f"weights do not match ESPCN: missing keys {missing}, unexpected keys {unexpected}")
    scale = getattr(model, "scale", None)
    out_channels = getattr(model, "out_channels", 1)
    w = state.get("sub_pixel.0.weight")
    if scale is not None and w is not None and w.shape[0] != expected["sub_pixel.0.weight"].shape[0]:
        try:
            theirs = f"scale {scale_of(state, out_channels)}"
        except WeightsError:
            theirs = f"{w.shape[0]} output channels"
        # The facts too: out_channels x scale^2 outputs can be read two ways.
        raise WeightsError(
            f"weights are for {theirs} but the model is for scale {scale} (sub_pixel.0.weight has "
            f"{w.shape[0]} output channels; the model's {expected['sub_pixel.0.weight'].shape[0]} are "
            f"{scale}^2 x {out_channels} output channel(s))"
        )
    for key, value in expected.items():
        if key in state and state[key].shape != value.shape:
            raise WeightsError(
                f"weight {key} has shape {tuple(state[key].shape)}, the model expects {tuple(value.shape)}"
            )


def save_weights(
    state: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> None:
    """Write a state dict as safetensors, atomically (temporary file, then rename); a failed write
    raises a one-line :class:`~espcn_fast.atomic_write.WriteError` naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}
    with replacing(path, errors=(OSError, SafetensorError)) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
