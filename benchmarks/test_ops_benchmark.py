"""pytest-benchmark suite for the individual ops, at the shapes of a 1080p x3 frame.

    pytest benchmarks/ --benchmark-only                   # time every op here
    pytest benchmarks/ --benchmark-only -k cuda           # one backend
    pytest benchmarks/ --benchmark-disable                # run each once (a smoke test)

Each case is one op on a 640x360 LR input (the 32-channel input of layer 3 for
the pixel shuffle), batch 1, on every backend that runs here: the C++ CPU
kernels, the CUDA kernels (each precision of the fused op) and the Triton
kernels on a GPU. CUDA cases synchronise inside the timed call. The
side-by-side frame times with the peers are `python benchmarks/run.py`.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from espcn_fast import ESPCN, ops

LR = (360, 640)
SCALE = 3


def _devices() -> list[str]:
    found = ["cpu"] if ops.HAVE_EXTENSION else []
    if torch.cuda.is_available() and ops.has_kernel("espcn_forward", "CUDA"):
        found.append("cuda")
    if torch.cuda.is_available() and importlib.util.find_spec("triton") is not None:
        found.append("triton")
    return found


def _weights(device: str, precision: str = "fp32") -> list[torch.Tensor]:
    dev = "cpu" if device == "cpu" else "cuda"
    wdtype = ops.WEIGHT_DTYPES[precision]
    params = [t.detach() for t in ESPCN.from_pretrained(SCALE).state_dict().values()]
    return [t.to(dev, wdtype if i % 2 == 0 else torch.float32) for i, t in enumerate(params)]


def _namespace(device: str):
    if device == "triton":
        from espcn_fast.triton_backend import ops as _  # noqa: F401  (registers the ops)

        return torch.ops.espcn_fast_triton
    return torch.ops.espcn_fast


def _timed(device: str, fn):
    if device == "cpu":
        return fn

    def synced():
        out = fn()
        torch.cuda.synchronize()
        return out

    return synced


@pytest.fixture(params=_devices() or [pytest.param("none", marks=pytest.mark.skip(reason=str(ops.EXTENSION_ERROR)))])
def device(request) -> str:
    return request.param


@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16", "bf16"])
def test_espcn_forward(benchmark, device, precision):
    if device == "cpu" and precision != "fp32":
        pytest.skip("the CPU kernels compute in fp32")
    dev = "cpu" if device == "cpu" else "cuda"
    x = torch.rand(1, 1, *LR, device=dev)
    ws = _weights(device, precision)
    op = _namespace(device).espcn_forward
    out = benchmark(_timed(device, lambda: op(x, *ws, SCALE, False, precision)))
    assert out.shape == (1, 1, LR[0] * SCALE, LR[1] * SCALE)


@pytest.mark.parametrize("layer", ["conv2d_tanh_1", "conv2d_tanh_2", "conv2d_pixel_shuffle"])
def test_layer(benchmark, device, layer):
    dev = "cpu" if device == "cpu" else "cuda"
    w1, b1, w2, b2, w3, b3 = _weights(device)
    ns = _namespace(device)
    if layer == "conv2d_tanh_1":
        x = torch.rand(1, 1, *LR, device=dev)
        fn = lambda: ns.conv2d_tanh(x, w1, b1)  # noqa: E731
    elif layer == "conv2d_tanh_2":
        x = torch.rand(1, 64, *LR, device=dev)
        fn = lambda: ns.conv2d_tanh(x, w2, b2)  # noqa: E731
    else:
        x = torch.rand(1, 32, *LR, device=dev)
        fn = lambda: ns.conv2d_pixel_shuffle(x, w3, b3, SCALE, False)  # noqa: E731
    out = benchmark(_timed(device, fn))
    assert torch.isfinite(out).all()
