"""The network as a file other tools run: ONNX (ONNX Runtime, OpenCV DNN, vs-mlrt, TensorRT, OpenVINO)
and TorchScript (FFmpeg's libtorch backend, C++ programs).

The graph is the reference network on one channel, layer for layer: Conv 5x5,
Tanh, Conv 3x3, Tanh, Conv 3x3, DepthToSpace (pixel shuffle), and a Clip to
[0, 1] unless asked not to. Input ``x``, output ``y`` (the names FFmpeg's
``dnn_processing`` filter takes by default), float32 ``(N, 1, H, W)`` on
[0, 1] with N, H and W free.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .atomic_write import replacing
from .model import ESPCN

FORMATS = ("onnx", "torchscript")
SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript", ".ts": "torchscript"}
# Opset 17 (2022): read by ONNX Runtime 1.12+, OpenCV 4.7+ and TensorRT 8.5+; DepthToSpace's CRD
# mode (what pixel shuffle is) needs 11.
DEFAULT_OPSET = 17
MIN_OPSET = 11


class _Graph(nn.Module):
    """The reference layers without the input checks, which an exporter would trace as constants."""

    def __init__(self, model: ESPCN, clamp: bool) -> None:
        super().__init__()
        self.feature_maps = model.feature_maps
        self.sub_pixel = model.sub_pixel
        self.clamp = clamp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.sub_pixel(self.feature_maps(x))
        return y.clamp(0.0, 1.0) if self.clamp else y


def format_of(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The export format: ``fmt`` when given, else the one ``path``'s suffix names; ValueError otherwise."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(
            f"cannot tell the format from {Path(path).name!r}: give --format "
            f"({' or '.join(FORMATS)}) or a name ending in {', '.join(SUFFIXES)}"
        )
    return SUFFIXES[suffix]


def export_model(
    model: ESPCN, path: str | os.PathLike, fmt: str | None = None, opset: int = DEFAULT_OPSET, clamp: bool = True
) -> Path:
    """Write ``model`` (a one-channel :class:`~espcn_fast.ESPCN`) to ``path`` as ONNX or TorchScript.

    ``fmt`` is ``"onnx"`` or ``"torchscript"`` (default: from the suffix, see
    ``SUFFIXES``). The file is written whole or not at all. Returns the path.
    """
    if not isinstance(model, ESPCN):
        raise TypeError(f"export_model takes an ESPCN model, got {type(model).__name__}")
    if model.in_channels != 1 or model.out_channels != 1:
        raise ValueError(
            f"export_model exports one-channel (Y) models; this one has {model.in_channels} in, "
            f"{model.out_channels} out"
        )
    fmt = format_of(path, fmt)
    if fmt == "onnx" and (isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET):
        raise ValueError(f"opset must be an integer >= {MIN_OPSET} (DepthToSpace's CRD mode), got {opset!r}")
    copy = ESPCN(model.scale)  # float32 on the CPU, whatever the model's dtype and device
    copy.load_state_dict({k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()})
    graph = _Graph(copy, clamp).eval()
    path = Path(path)
    example = torch.rand(1, 1, 16, 16)
    with replacing(path, suffix=path.suffix) as tmp, torch.no_grad():
        if fmt == "onnx":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
                torch.onnx.export(
                    graph,
                    (example,),
                    str(tmp),
                    input_names=["x"],
                    output_names=["y"],
                    opset_version=opset,
                    dynamo=False,
                    dynamic_axes={
                        "x": {0: "batch", 2: "height", 3: "width"},
                        "y": {0: "batch", 2: "out_height", 3: "out_width"},
                    },
                )
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TorchScript's deprecation notice: FFmpeg still reads it
                scripted = torch.jit.script(graph)
                torch.jit.save(scripted, str(tmp))
    return path
