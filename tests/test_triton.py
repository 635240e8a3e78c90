"""The Triton backend against the float64 reference.

Without a GPU every kernel runs in Triton's CPU interpreter (TRITON_INTERPRET=1,
set here before the kernels are imported); on a GPU (benchmarks/gpu_check.sh)
the same tests run compiled, plus torch.compile, the full opcheck and a
cross-check against the CUDA backend.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch
import torch.nn.functional as F

GPU = torch.cuda.is_available()
if not GPU:
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")

from espcn_fast import ESPCN, FastESPCN, ops  # noqa: E402

from .kernel_checks import (  # noqa: E402
    REL_TOL,
    assert_matches_reference,
    poisoned_outputs,
    random_model,
    reference64,
    relative_error,
    weights,
)

DEVICE = "cuda" if GPU else "cpu"
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


def triton_ops():
    from espcn_fast.triton_backend import ops as triton_ops_module  # noqa: F401  (registers the ops)

    return torch.ops.espcn_fast_triton


def typed(model: ESPCN, precision: str) -> list[torch.Tensor]:
    wdtype = ops.WEIGHT_DTYPES[precision]
    return [t.to(DEVICE, wdtype if i % 2 == 0 else torch.float32) for i, t in enumerate(weights(model))]


@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16", "bf16"])
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 1, 17, 23), (1, 1, 5, 130)])
def test_espcn_forward(precision, scale, shape):
    model = random_model(scale, seed=scale + shape[3])
    x = torch.rand(shape, generator=torch.Generator().manual_seed(shape[2]))
    with poisoned_outputs():
        out = triton_ops().espcn_forward(x.to(DEVICE), *typed(model, precision), scale, False, precision)
    assert_matches_reference(out, reference64(model, x), precision)


def test_half_images_and_clamp():
    model = random_model(3, seed=2)
    x = torch.rand(1, 1, 9, 14, generator=torch.Generator().manual_seed(2))
    with poisoned_outputs():
        out = triton_ops().espcn_forward(x.to(DEVICE).half(), *typed(model, "fp16"), 3, True, "fp16")
    assert out.dtype == torch.float16 and out.min() >= 0 and out.max() <= 1
    assert_matches_reference(out, reference64(model, x.half().float(), clamp=True), "fp16")


@pytest.mark.parametrize(
    "k, cin, cout, half", [(5, 1, 64, False), (3, 64, 32, False), (3, 5, 20, True), (1, 3, 7, False), (7, 2, 3, False)]
)
def test_conv2d_tanh(k, cin, cout, half):
    g = torch.Generator().manual_seed(k * cin + cout)
    x, w, b = (
        torch.rand(2, cin, 11, 19, generator=g),
        torch.randn(cout, cin, k, k, generator=g) * 0.3,
        torch.randn(cout, generator=g),
    )
    xin = x.half() if half else x
    with poisoned_outputs():
        out = triton_ops().conv2d_tanh(xin.to(DEVICE), w.to(DEVICE), b.to(DEVICE))
    ref = torch.tanh(F.conv2d(xin.double(), w.double(), b.double(), padding=k // 2))
    torch.testing.assert_close(out.double().cpu(), ref, atol=2e-3 if half else 1e-5, rtol=0)


@pytest.mark.parametrize(
    "layout, cin",
    [
        ("channels_last", 40),
        ("channels_last", 3),
        ("every other row", 40),
        ("taps transposed", 40),
        ("one pixel wide", 40),
        ("one pixel high", 3),
    ],
)
def test_conv_layouts(layout, cin):
    # The kernel reads any strides: channels-last (espcn_forward's own layout,
    # here also for the few-channel path of layer 1), a pixel stride > 1,
    # column-major taps, and size-1 dimensions whose strides PyTorch leaves
    # arbitrary (a transposed one-pixel row is "contiguous" but not NCHW).
    g = torch.Generator().manual_seed(len(layout) + cin)
    x = torch.rand(2, cin, 14, 13, generator=g)
    w, b = torch.randn(24, cin, 3, 3, generator=g) * 0.2, torch.randn(24, generator=g)
    w3, b3 = torch.randn(27, cin, 3, 3, generator=g) * 0.2, torch.randn(27, generator=g)
    if layout == "channels_last":
        x, w, w3 = (t.contiguous(memory_format=torch.channels_last) for t in (x, w, w3))
    elif layout == "every other row":
        x = x[:, :, ::2]
    elif layout == "taps transposed":
        w, w3 = w.transpose(2, 3), w3.transpose(2, 3)
    elif layout == "one pixel wide":
        x = torch.rand(2, cin, 1, 9, generator=g).transpose(2, 3)
    else:
        x = torch.rand(2, cin, 7, 1, generator=g).transpose(2, 3)
    with poisoned_outputs():
        out = triton_ops().conv2d_tanh(x.to(DEVICE), w.to(DEVICE), b.to(DEVICE))
        hr = triton_ops().conv2d_pixel_shuffle(x.to(DEVICE), w3.to(DEVICE), b3.to(DEVICE), 3, False)
    xd = x.double()
    torch.testing.assert_close(
        out.double().cpu(), torch.tanh(F.conv2d(xd, w.double(), b.double(), padding=1)), atol=1e-5, rtol=0
    )
    ref = F.pixel_shuffle(F.conv2d(xd, w3.double(), b3.double(), padding=1), 3)
    torch.testing.assert_close(hr.double().cpu(), ref, atol=1e-5, rtol=0)


def test_images_over_int32_offsets_are_refused():
    # 2^31 elements in one image, without the memory (a broadcast view).
    x = torch.rand(1, 1, 1, 1, device=DEVICE).expand(1, 2**16, 2**8, 2**7)  # a view: no memory
    w, b = torch.randn(2, 2**16, 1, 1).to(DEVICE), torch.randn(2).to(DEVICE)
    with pytest.raises(RuntimeError, match=r"2147483648 elements per image, over the 2\^31 .*FastESPCN\(tile=...\)"):
        triton_ops().conv2d_tanh(x, w, b)
    # A one-channel image whose 64-channel intermediate would pass 2^31, refused before allocating it.
    model = random_model(3)
    x = torch.rand(1, 1, 1, 1, device=DEVICE).expand(1, 1, 2**13, 2**12)  # a view: no memory
    with pytest.raises(RuntimeError, match=r"layer 1's output has 2147483648 elements per image"):
        triton_ops().espcn_forward(x, *typed(model, "fp32"), 3, False, "fp32")
    # 2^31 - 1023 pixels over a batch of small images: the last row block would pass 2^31.
    x = torch.rand(1, 1, 1, 1, device=DEVICE).expand(2**31 - 1023, 1, 1, 1)  # a view: no memory
    w, b = torch.randn(2, 1, 3, 3).to(DEVICE), torch.randn(2).to(DEVICE)
    with pytest.raises(RuntimeError, match=r"the batch has 2147482625 pixels, over the 2\^31 - 1024 .*smaller batches"):
        triton_ops().conv2d_tanh(x, w, b)


def test_fast_module_on_odd_strides():
    # The whole network on a one-pixel-wide image whose width stride is not 1.
    model = random_model(2, seed=9)
    x = torch.rand(1, 1, 1, 9, generator=torch.Generator().manual_seed(9)).transpose(2, 3)
    fast = FastESPCN.from_reference(model, backend="triton", precision="fp32").to(DEVICE)
    with torch.no_grad():
        assert_matches_reference(fast(x.to(DEVICE)), reference64(model, x), "fp32")


@pytest.mark.parametrize("scale, cout, clamp", [(2, 4, False), (3, 9, True), (4, 16, False), (3, 27, False)])
def test_conv2d_pixel_shuffle(scale, cout, clamp):
    g = torch.Generator().manual_seed(scale * cout)
    x, w, b = (
        torch.rand(1, 32, 9, 13, generator=g),
        torch.randn(cout, 32, 3, 3, generator=g) * 0.1,
        torch.randn(cout, generator=g),
    )
    with poisoned_outputs():
        out = triton_ops().conv2d_pixel_shuffle(x.to(DEVICE), w.to(DEVICE), b.to(DEVICE), scale, clamp)
    ref = F.pixel_shuffle(F.conv2d(x.double(), w.double(), b.double(), padding=1), scale)
    torch.testing.assert_close(out.double().cpu(), ref.clamp(0, 1) if clamp else ref, atol=1e-5, rtol=0)


def test_tanh_is_accurate_to_float_rounding():
    import triton

    from espcn_fast.triton_backend import kernels

    x = torch.cat(
        [
            torch.linspace(-12, 12, 100001),
            torch.logspace(-8, 1, 10001),
            -torch.logspace(-8, 1, 10001),
            torch.tensor([0.0, -0.0, float("inf"), -float("inf")]),
        ]
    ).to(DEVICE)
    out = torch.full_like(x, float("nan"))
    kernels.tanh_kernel[(triton.cdiv(x.numel(), 4096),)](x, out, x.numel(), BLOCK=4096)
    ref = torch.tanh(x.double().cpu()).float()

    def ordered(t: torch.Tensor) -> torch.Tensor:  # float32 bits -> integers in the order of the floats
        i = t.contiguous().view(torch.int32).long()
        return torch.where(i < 0, -(i & 0x7FFFFFFF), i)

    ulps = (ordered(out.cpu()) - ordered(ref)).abs()
    assert int(ulps.max()) <= 2, f"tanh off by {int(ulps.max())} ulp at x = {float(x[ulps.argmax()])}"
    nan = torch.tensor([float("nan")], device=DEVICE)
    kernels.tanh_kernel[(1,)](nan, out, 1, BLOCK=16)
    assert torch.isnan(out[0])


def test_fast_module_on_triton():
    ref = random_model(2, seed=4)
    for precision in ("fp32", "fp16"):
        fast = FastESPCN.from_reference(ref, backend="triton", precision=precision).to(DEVICE)
        x = torch.rand(2, 1, 13, 11)
        with torch.no_grad():
            assert fast.backend_for(x.to(DEVICE)) == "triton"
            assert_matches_reference(fast(x.to(DEVICE)), reference64(ref, x), precision)
            assert fast(x.to(DEVICE).bfloat16()).dtype == torch.bfloat16


def test_errors_name_the_argument():
    t = triton_ops()
    model = random_model(3)
    ws = typed(model, "fp32")
    x = torch.rand(1, 1, 6, 6, device=DEVICE)
    with pytest.raises(RuntimeError, match="w1 must be float16, got float32"):
        t.espcn_forward(x, *ws, 3, False, "fp16")
    with pytest.raises(RuntimeError, match="unknown precision 'fp8'"):
        t.espcn_forward(x, *ws, 3, False, "fp8")
    with pytest.raises(RuntimeError, match="espcn_fast_triton::espcn_forward: precision 'int8' runs on the CPU only"):
        t.espcn_forward(x, *ws, 3, False, "int8")
    with pytest.raises(RuntimeError, match="x must be float32 or float16, got float64"):
        t.espcn_forward(x.double(), *ws, 3, False, "fp32")
    with pytest.raises(RuntimeError, match=r"x must be a 4-D \(N, C, H, W\) tensor"):
        t.conv2d_tanh(x[0], ws[0], ws[1])
    with pytest.raises(RuntimeError, match="w2 expects 64 input channel"):
        t.espcn_forward(x, ws[0][:63], ws[1][:63], *ws[2:], 3, False, "fp32")
    with pytest.raises(RuntimeError, match="weight has 9 output channels, not a multiple of scale\\^2 = 4"):
        t.conv2d_pixel_shuffle(torch.rand(1, 32, 4, 4, device=DEVICE), ws[4], ws[5], 2, False)
    if not GPU:
        with pytest.raises(RuntimeError, match="bias must be float32, got float16"):
            t.conv2d_tanh(x, ws[0], ws[1].half())


def _op_samples():
    model = random_model(3, seed=4)
    s = {k: v.to(DEVICE) for k, v in model.state_dict().items()}
    x, h = torch.rand(2, 1, 9, 7, device=DEVICE), torch.rand(2, 32, 9, 7, device=DEVICE)
    t = triton_ops()
    return [
        (t.conv2d_tanh.default, (x, s["feature_maps.0.weight"], s["feature_maps.0.bias"])),
        (t.conv2d_pixel_shuffle.default, (h, s["sub_pixel.0.weight"], s["sub_pixel.0.bias"], 3, True)),
        (t.espcn_forward.default, (x, *typed(model, "fp16"), 3, False, "fp16")),
    ]


@pytest.mark.parametrize("index", range(3))
def test_opcheck(index):
    op, args = _op_samples()[index]
    # The interpreter cannot run under the AOT-dispatch tracing tests; the GPU run does them all.
    utils = None if not INTERPRETED else ("test_schema", "test_autograd_registration", "test_faketensor")
    torch.library.opcheck(op, args, test_utils=utils) if utils else torch.library.opcheck(op, args)


def test_fast_module_traces_as_one_graph():
    # Dynamo alone (backend="eager": the op runs as it is, interpreted here):
    # FastESPCN's Python around the op must not break the graph. (On the first
    # GPU run, torch 2.11, the backend checks broke it; this torch's Dynamo
    # traces them, so test_fast's resolve test is the one that catches that.)
    ref = random_model(3, seed=6)
    fast = torch.compile(
        FastESPCN.from_reference(ref, backend="triton", precision="fp16").to(DEVICE), fullgraph=True, backend="eager"
    )
    x = torch.rand(1, 1, 12, 15)
    with torch.no_grad():
        assert_matches_reference(fast(x.to(DEVICE)), reference64(ref, x), "fp16")


@pytest.mark.skipif(INTERPRETED, reason="torch.compile cannot trace into interpreted Triton kernels; runs on a GPU")
def test_torch_compile_fast_module():
    ref = random_model(3, seed=6)
    fast = torch.compile(FastESPCN.from_reference(ref, backend="triton", precision="fp16").cuda(), fullgraph=True)
    x = torch.rand(1, 1, 24, 31)
    with torch.no_grad():
        assert_matches_reference(fast(x.cuda()), reference64(ref, x), "fp16")


@pytest.mark.skipif(not GPU or not ops.has_kernel("espcn_forward", "CUDA"), reason="needs a GPU and the CUDA kernels")
@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16", "bf16"])
def test_agrees_with_the_cuda_backend(precision):
    model = random_model(4, seed=8)
    x = torch.rand(2, 1, 45, 61, device="cuda")
    ws = typed(model, precision)
    a = triton_ops().espcn_forward(x, *ws, 4, False, precision)
    b = ops.espcn_forward(x, *ws, 4, False, precision)
    assert relative_error(a, b) <= 2 * REL_TOL[precision]


def test_fake_kernels_name_the_triton_op():
    # Shared with the C++ ops, but naming this namespace (what torch.compile reports).
    from torch._subclasses.fake_tensor import FakeTensorMode

    t = triton_ops()
    with FakeTensorMode() as mode:
        x = mode.from_tensor(torch.rand(1, 3, 6, 6))
        ws = [mode.from_tensor(w) for w in typed(random_model(3), "fp32")]
        with pytest.raises(
            RuntimeError, match=r"espcn_fast_triton::espcn_forward: w1 expects 1 input channel\(s\) but its input has 3"
        ):
            t.espcn_forward(x, *ws, 3, False, "fp32")


def test_clamp_keeps_nan():
    # As torch.clamp (compiled, Triton's default min/max would drop NaN to a bound).
    model = random_model(2, seed=5)
    x = torch.rand(1, 1, 7, 8)
    x[0, 0, 3, 4] = float("nan")
    out = triton_ops().espcn_forward(x.to(DEVICE), *typed(model, "fp32"), 2, True, "fp32")
    expected = reference64(model, x, clamp=True).isnan()
    assert expected.any() and torch.equal(out.isnan().cpu(), expected)


def test_batch_pixel_limit_boundary():
    # Exactly at the limit passes the check (checked alone: a launch that big would take hours here).
    from espcn_fast.triton_backend import ops as triton_ops_module

    check = triton_ops_module._check_addressable
    check("op", torch.rand(1, 1, 1, 1).expand(2**31 - 1024, 1, 1, 1), ())
    with pytest.raises(RuntimeError, match="the batch has 2147482625 pixels"):
        check("op", torch.rand(1, 1, 1, 1).expand(2**31 - 1023, 1, 1, 1), ())
