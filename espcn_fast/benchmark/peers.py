"""What a user would run instead of espcn_fast, each made ready to time.

Every factory returns ``(fn, setup_seconds)`` where ``fn(x) -> Tensor`` runs
one batch, or raises :class:`Skip` with the reason it can't run here.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..export import export_model
from ..model import ESPCN

Runner = Callable[[torch.Tensor], torch.Tensor]


class Skip(Exception):
    """This row can't run here; the message says why."""


def eager(model: ESPCN, x: torch.Tensor, channels_last: bool = False) -> tuple[Runner, float]:
    model = model.eval()
    if channels_last:  # on a copy: .to(memory_format=) converts in place, and the model is shared by every row
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)

    def run(inp: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(inp.to(memory_format=torch.channels_last) if channels_last else inp)

    return run, 0.0


_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _cuda_precision(precision: str) -> contextlib.AbstractContextManager:
    """fp32 without tf32 (exact), tf32 as cuDNN's and matmul's default-on; 16-bit models run in their dtype."""
    allow = precision != "fp32"
    return torch.backends.cudnn.flags(enabled=True, allow_tf32=allow)


def eager_cuda(model: ESPCN, x: torch.Tensor, precision: str, channels_last: bool = False) -> tuple[Runner, float]:
    """Eager PyTorch on cuDNN: float32 image in and out, the model in ``precision``."""
    if x.device.type != "cuda":
        raise Skip("a GPU peer")
    dtype = _DTYPES[precision]
    m = copy.deepcopy(model).eval().to(dtype)  # the shared model stays float32
    if channels_last:
        m = m.to(memory_format=torch.channels_last)

    def run(inp: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), _cuda_precision(precision):
            h = inp.to(dtype)
            return m(h.to(memory_format=torch.channels_last) if channels_last else h).float()

    return run, 0.0


def compiled_cuda(
    model: ESPCN, x: torch.Tensor, precision: str, mode: str | None = "max-autotune"
) -> tuple[Runner, float]:
    """``torch.compile`` (by default ``mode="max-autotune"``) of the model in ``precision``, float32 image in and out."""
    if x.device.type != "cuda":
        raise Skip("a GPU peer")
    dtype = _DTYPES[precision]
    m = copy.deepcopy(model).eval().to(dtype)  # the shared model stays float32
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision != "fp32"
    try:
        with _cuda_precision(precision):
            inner, setup = compiled(lambda inp: m(inp.to(dtype)).float(), x, mode=mode)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old

    def run(inp: torch.Tensor) -> torch.Tensor:
        with _cuda_precision(precision):
            return inner(inp)

    return run, setup


def autocast_fp16(model: ESPCN, x: torch.Tensor) -> tuple[Runner, float]:
    if x.device.type != "cuda":
        raise Skip("autocast fp16 is a GPU peer")

    def run(inp: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
            return model(inp)

    return run, 0.0


def compiled(
    model: ESPCN | Runner, x: torch.Tensor, mode: str | None = None, freezing: bool = False
) -> tuple[Runner, float]:
    """``torch.compile``; the compile time (first call) is reported apart."""
    import torch._inductor.config as inductor_config

    torch._dynamo.reset()
    old = inductor_config.freezing
    inductor_config.freezing = freezing
    try:
        fn = torch.compile(model.eval() if isinstance(model, torch.nn.Module) else model, mode=mode)
        start = time.perf_counter()
        with torch.inference_mode():
            fn(x)
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        setup = time.perf_counter() - start
    except Exception as exc:  # compilers fail in many ways; the row says how
        raise Skip(f"torch.compile failed: {type(exc).__name__}: {str(exc)[:200]}") from None
    finally:
        inductor_config.freezing = old

    def run(inp: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return fn(inp)

    return run, setup


def export_onnx(model: ESPCN, folder: Path) -> Path:
    """The reference model as the project exports it (input x, output y), unclamped as the other rows."""
    return export_model(model, folder / f"espcn_x{model.scale}.onnx", clamp=False)


def onnxruntime(
    model: ESPCN, x: torch.Tensor, threads: int, provider: str = "CPUExecutionProvider"
) -> tuple[Runner, float]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise Skip("onnxruntime is not installed") from None
    if provider not in ort.get_available_providers():
        raise Skip(f"onnxruntime has no {provider} here (onnxruntime-gpu is not installed)")
    if x.device.type != "cpu" and provider == "CPUExecutionProvider":
        raise Skip("the CPU provider is a CPU peer")
    start = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="espcn_onnx_"))
    path = export_onnx(model, folder)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=[provider])
    setup = time.perf_counter() - start

    def run(inp: torch.Tensor) -> torch.Tensor:
        # On a GPU the frame goes through host memory, as a user of the Python API does.
        return torch.from_numpy(session.run(None, {"x": inp.cpu().numpy()})[0]).to(inp.device)

    return run, setup


def opencv_dnn(model: ESPCN, x: torch.Tensor, threads: int) -> tuple[Runner, float]:
    if x.device.type != "cpu":
        raise Skip("OpenCV's DNN module runs on the CPU here (no CUDA build of OpenCV)")
    try:
        import cv2
    except ImportError:
        raise Skip("OpenCV (cv2) is not installed") from None
    start = time.perf_counter()
    path = export_onnx(model, Path(tempfile.mkdtemp(prefix="espcn_cv2_")))
    cv2.setNumThreads(threads)
    net = cv2.dnn.readNetFromONNX(str(path))
    setup = time.perf_counter() - start

    def run(inp: torch.Tensor) -> torch.Tensor:
        net.setInput(inp.numpy())
        return torch.from_numpy(net.forward())

    return run, setup


# Calibration for the int8 rows: random LR crops of the training images (never the test sets), the
# 17x17 LR sub-images ESPCN is trained on, Y on [0, 1].
CALIBRATION_SET = "T91"
CALIBRATION_CROPS = 256
CALIBRATION_SIZE = 17


@functools.lru_cache(maxsize=4)  # the int8 rows of one scale share it (the bicubic resizes take seconds)
def calibration_crops(
    scale: int, count: int = CALIBRATION_CROPS, size: int = CALIBRATION_SIZE, seed: int = 0
) -> tuple[np.ndarray, ...]:
    """``count`` random ``(1, 1, size, size)`` float32 crops of the bicubic LR Y of the T91 images."""
    from ..color import rgb_to_y
    from ..data_dir import find_data_dir
    from ..evaluate import make_lr
    from ..image_io import list_images, read_image

    try:
        folder = find_data_dir() / CALIBRATION_SET
    except FileNotFoundError as exc:
        raise Skip(f"no calibration images: {exc}") from None
    if not folder.is_dir():
        raise Skip(f"no calibration images: {folder} is absent")
    g = torch.Generator().manual_seed(seed)
    lr = [rgb_to_y(make_lr(read_image(p), scale)) for p in list_images(folder, "calibration folder")]
    lr = [y for y in lr if min(y.shape[-2:]) >= size]
    crops = []
    for i in torch.randint(len(lr), (count,), generator=g).tolist():
        h, w = lr[i].shape[-2:]
        top = int(torch.randint(h - size + 1, (1,), generator=g))
        left = int(torch.randint(w - size + 1, (1,), generator=g))
        crops.append(lr[i][:, top : top + size, left : left + size].unsqueeze(0).float().numpy())
    return tuple(crops)


def onnxruntime_int8(model: ESPCN, x: torch.Tensor, threads: int) -> tuple[Runner, float]:
    """ONNX Runtime on the export quantized to int8 by ``quantize_static`` (QDQ, per-channel weights),
    calibrated on T91 crops; the calibration is part of the setup time."""
    if x.device.type != "cpu":
        raise Skip("a CPU peer")
    try:
        import onnxruntime as ort
        from onnxruntime import quantization as q
    except ImportError:
        raise Skip("onnxruntime is not installed") from None
    start = time.perf_counter()
    crops = calibration_crops(model.scale)
    folder = Path(tempfile.mkdtemp(prefix="espcn_ort_int8_"))
    path = export_onnx(model, folder)

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(crops)

        def get_next(self) -> dict | None:
            crop = next(self.items, None)
            return None if crop is None else {"x": crop}

    quantized = folder / "int8.onnx"
    q.quantize_static(
        str(path),
        str(quantized),
        Reader(),
        quant_format=q.QuantFormat.QDQ,
        per_channel=True,
        activation_type=q.QuantType.QUInt8,
        weight_type=q.QuantType.QInt8,
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(quantized), options, providers=["CPUExecutionProvider"])
    setup = time.perf_counter() - start

    def run(inp: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"x": inp.numpy()})[0])

    return run, setup


# OpenVINO's names for the precisions of the rows.
_OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


def openvino(model: ESPCN, x: torch.Tensor, threads: int, precision: str = "fp32") -> tuple[Runner, float]:
    """OpenVINO's CPU plugin on the ONNX export: ``precision`` "fp32" or "bf16" (its inference precision
    hint), or "int8" (the model quantized by NNCF's post-training quantization, calibrated on T91 crops)."""
    if x.device.type != "cpu":
        raise Skip("a CPU peer")
    try:
        import openvino as ov
    except ImportError:
        raise Skip("openvino is not installed") from None
    start = time.perf_counter()
    core = ov.Core()
    if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise Skip("this CPU has no bf16 arithmetic (OpenVINO would run f32)")
    ov_model = core.read_model(str(export_onnx(model, Path(tempfile.mkdtemp(prefix="espcn_ov_")))))
    if precision == "int8":
        try:
            import nncf
        except ImportError:
            raise Skip("nncf (OpenVINO's quantization) is not installed") from None
        crops = calibration_crops(model.scale)
        ov_model = nncf.quantize(ov_model, nncf.Dataset(crops), subset_size=len(crops))
    config = {
        "INFERENCE_PRECISION_HINT": _OPENVINO_PRECISIONS.get(precision, "f32"),  # int8: f32 between int8 ops
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
    }
    compiled = core.compile_model(ov_model, "CPU", config)
    request = compiled.create_infer_request()
    setup = time.perf_counter() - start

    def run(inp: torch.Tensor) -> torch.Tensor:
        # A copy: the request's output buffer is reused by its next call.
        return torch.from_numpy(request.infer({0: inp.numpy()})[0].copy())

    return run, setup
