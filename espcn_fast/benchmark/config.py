"""What a benchmark run measures: the frames, the rows (ours and the peers) and their tolerances."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .. import backends, ops
from ..fast import FastESPCN
from ..model import ESPCN
from . import peers
from .row_weights import int8_weights

# Output frame (1080p); LR input = this / scale.
FRAME = (1080, 1920)
QUICK_FRAME = (270, 480)
# Largest |row - float64 reference| accepted per precision, on [0, 1] images. bf16: 0.009 measured
# (OpenVINO, x3). int8: the benchmark frames are uniform noise, whose reference outputs span about
# [-0.46, 1.55] (x3, 1080p) where the ranges calibrated on T91 crops end near [0, 1.04], so a correct
# int8 model clips them: 0.51 (ONNX Runtime) and 0.50 (OpenVINO/NNCF) at 1080p, 0.47 and 0.43 at the
# quick frame, 0.61 for ONNX Runtime on a batch of 8 frames at x2 and x4 (more frames, further into the
# noise's tails), while their mean errors are 0.018 and 0.05; the Set5 PSNR column measures their quality.
TOLERANCE = {"fp32": 1e-4, "tf32": 2e-2, "fp16": 2e-2, "bf16": 5e-2, "int8": 0.7}
# Our own int8 rows are checked against the float64 reference of their own arithmetic
# (reduced_precision, with the weights' layer-1 ranges: Candidate.arithmetic), which they compute but
# for rare activations stored one step the other way (0.003-0.004 measured on the noise frames at
# x2-x4), so a wrong kernel cannot hide under the peers' clipping. (Their layer-1 ranges, calibrated on
# T91 too, clip the noise a little: 0.11-0.16 from the float model of the same weights, against
# 0.009-0.014 on every Set5/Set14 image.)
OURS_TOLERANCE = {"int8": 0.02}


def tolerance(precision: str, ours: bool) -> float:
    """The largest accepted |row - float64 reference| of a row in ``precision``."""
    return OURS_TOLERANCE.get(precision, TOLERANCE[precision]) if ours else TOLERANCE[precision]


# The table's order of precisions within a scale and batch.
PRECISION_ORDER = ("fp32", "tf32", "fp16", "bf16", "int8")


@dataclass
class Candidate:
    """One row of the table: a backend of ours or a peer, in one precision."""

    name: str  # "espcn_fast:cpu", "eager", ...
    precision: str
    make: Callable[[ESPCN, torch.Tensor], tuple[peers.Runner, float]]
    ours: bool = False
    slow_setup: bool = False  # compiles: left out of --quick unless asked for
    # The model the row runs instead of the shipped float one, and a note for its label (our int8 rows).
    weights: Callable[[ESPCN], tuple[ESPCN, str]] | None = None
    # The reduced-precision arithmetic (reduced_precision) whose float64 reference the row is checked
    # against instead of the float model's (our int8 rows).
    arithmetic: str | None = None


def macs_per_lr_pixel(model: ESPCN) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def need_backend(backend: str) -> None:
    """Skip a row of ours when ``backend`` cannot run here (no kernels built, no GPU, no triton)."""
    reason = backends.unavailable_reason(backend)
    if reason is not None:
        raise peers.Skip(reason)


def need_cpu_precision(precision: str) -> None:
    """Skip a CPU row of ours in ``precision`` where this CPU lacks its instruction set (the kernels'
    error, which names it, is the reason)."""
    try:
        ops.cpu_isa(precision)
    except RuntimeError as exc:
        raise peers.Skip(str(exc)) from None


def ours_cpu(precision: str = "fp32") -> Callable[[ESPCN, torch.Tensor], tuple[peers.Runner, float]]:
    """FastESPCN on the fused CPU op in ``precision`` ("fp32", "bf16", "int8")."""

    def make(model: ESPCN, x: torch.Tensor) -> tuple[peers.Runner, float]:
        need_backend("cpu")
        need_cpu_precision(precision)
        fast = FastESPCN.from_reference(model, backend="cpu", precision=precision)
        return (lambda inp: fast(inp)), 0.0

    return make


def ours_layers(model: ESPCN, x: torch.Tensor) -> tuple[peers.Runner, float]:
    """The three per-layer fused ops one after the other (activations go through memory)."""
    need_backend("cuda" if x.is_cuda else "cpu")
    s = {k: v.detach() for k, v in model.state_dict().items()}

    def run(inp: torch.Tensor) -> torch.Tensor:
        h = ops.conv2d_tanh(inp, s["feature_maps.0.weight"], s["feature_maps.0.bias"])
        h = ops.conv2d_tanh(h, s["feature_maps.2.weight"], s["feature_maps.2.bias"])
        return ops.conv2d_pixel_shuffle(h, s["sub_pixel.0.weight"], s["sub_pixel.0.bias"], model.scale)

    return run, 0.0


def ours_gpu(backend: str, precision: str) -> Callable[[ESPCN, torch.Tensor], tuple[peers.Runner, float]]:
    """FastESPCN on the "cuda" or "triton" backend; Triton's first call (compile, autotune) is the setup time."""

    def make(model: ESPCN, x: torch.Tensor) -> tuple[peers.Runner, float]:
        need_backend(backend)
        fast = FastESPCN.from_reference(model, backend=backend, precision=precision)
        start = time.perf_counter()
        with torch.inference_mode():
            fast(x)
        torch.cuda.synchronize()
        return (lambda inp: fast(inp)), time.perf_counter() - start

    return make


# Dense peak rates (FLOP/s) of the arithmetic each precision uses, and copy
# bandwidth (bytes/s), by GPU name: the floor of a frame is the larger of
# flops / rate and bytes / bandwidth. Datasheet figures (H100/H200 SXM).
GPU_PEAKS = {
    "H100": {"fp32": 67e12, "tf32": 495e12, "fp16": 990e12, "bf16": 990e12, "bandwidth": 3.0e12},
    "H200": {"fp32": 67e12, "tf32": 495e12, "fp16": 990e12, "bf16": 990e12, "bandwidth": 4.0e12},
}


def floor_ms(gpu: str | None, precision: str, flops: float, io_bytes: float) -> float | None:
    """The fastest a frame can run on this GPU in this precision (None when the GPU is not in GPU_PEAKS)."""
    peaks = next((v for k, v in GPU_PEAKS.items() if gpu and k in gpu), None)
    if peaks is None:
        return None
    return max(flops / peaks[precision], io_bytes / peaks["bandwidth"]) * 1e3


def candidates(device: torch.device, threads: int) -> list[Candidate]:
    """Every row on ``device``: ours first, then the peers."""
    if device.type == "cpu":
        return [
            Candidate("espcn_fast:cpu", "fp32", ours_cpu(), ours=True),
            Candidate("espcn_fast:cpu", "bf16", ours_cpu("bf16"), ours=True),
            Candidate("espcn_fast:cpu", "int8", ours_cpu("int8"), ours=True, weights=int8_weights, arithmetic="int8"),
            Candidate("espcn_fast:cpu-layers", "fp32", ours_layers, ours=True),
            Candidate("eager", "fp32", peers.eager),
            Candidate("eager channels_last", "fp32", lambda m, x: peers.eager(m, x, channels_last=True)),
            Candidate("torch.compile", "fp32", peers.compiled, slow_setup=True),
            Candidate(
                "torch.compile freezing", "fp32", lambda m, x: peers.compiled(m, x, freezing=True), slow_setup=True
            ),
            Candidate("onnxruntime", "fp32", lambda m, x: peers.onnxruntime(m, x, threads)),
            Candidate("opencv dnn", "fp32", lambda m, x: peers.opencv_dnn(m, x, threads)),
            Candidate("openvino", "fp32", lambda m, x: peers.openvino(m, x, threads)),
            Candidate("openvino", "bf16", lambda m, x: peers.openvino(m, x, threads, "bf16")),
            Candidate("openvino", "int8", lambda m, x: peers.openvino(m, x, threads, "int8")),
            Candidate("onnxruntime", "int8", lambda m, x: peers.onnxruntime_int8(m, x, threads)),
        ]
    gpu = [Candidate("espcn_fast:cuda", p, ours_gpu("cuda", p), ours=True) for p in ops.PRECISIONS]
    gpu += [Candidate("espcn_fast:triton", p, ours_gpu("triton", p), ours=True) for p in ops.PRECISIONS]
    gpu += [Candidate("espcn_fast:cuda-layers", "fp32", ours_layers, ours=True)]
    for p in ops.PRECISIONS:
        gpu.append(Candidate("eager", p, lambda m, x, p=p: peers.eager_cuda(m, x, p)))
    gpu.append(
        Candidate("eager channels_last", "fp16", lambda m, x: peers.eager_cuda(m, x, "fp16", channels_last=True))
    )
    gpu.append(Candidate("eager autocast", "fp16", peers.autocast_fp16))
    gpu.append(
        Candidate("torch.compile", "tf32", lambda m, x: peers.compiled_cuda(m, x, "tf32", mode=None), slow_setup=True)
    )
    for p in ops.PRECISIONS:
        gpu.append(
            Candidate("torch.compile max-autotune", p, lambda m, x, p=p: peers.compiled_cuda(m, x, p), slow_setup=True)
        )
    gpu.append(
        Candidate(
            "onnxruntime cuda", "fp32", lambda m, x: peers.onnxruntime(m, x, threads, provider="CUDAExecutionProvider")
        )
    )
    gpu.append(Candidate("opencv dnn", "fp32", lambda m, x: peers.opencv_dnn(m, x, threads)))
    return gpu
