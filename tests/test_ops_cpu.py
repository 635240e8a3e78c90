"""The fused CPU ops against the reference ESPCN, in float64 where it matters."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F

from espcn_fast import ESPCN, ops

from .kernel_checks import forced_cpu_isa, poisoned_outputs, random_model, reference64, threads, weights

pytestmark = pytest.mark.skipif(not ops.HAVE_EXTENSION, reason=f"{ops.EXTENSION_ERROR}")

ISAS = ["avx512", "avx2", "portable"]


@contextmanager
def cpu_isa(name: str):
    with forced_cpu_isa(name):
        if ops.cpu_isa() != name:
            pytest.skip(f"this CPU cannot run the {name} kernels")
        yield


def test_poisoning_works():
    with poisoned_outputs():
        assert torch.isnan(torch.empty(4)).all()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 1, 2, 3), (2, 1, 7, 13), (1, 1, 37, 53), (3, 1, 131, 29)])
def test_espcn_forward_random_weights(isa, scale, shape):
    model = random_model(scale, seed=scale)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(shape[2]))
    with cpu_isa(isa), poisoned_outputs(), threads(2):
        out = ops.espcn_forward(x, *weights(model), scale)
    assert out.shape == (shape[0], 1, shape[2] * scale, shape[3] * scale)
    torch.testing.assert_close(out.double(), reference64(model, x), atol=2e-5, rtol=0)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("k1, k2, k3", [(5, 3, 1), (3, 3, 5), (5, 3, 7), (1, 5, 3), (7, 1, 5)])
def test_espcn_forward_other_kernel_sizes(isa, k1, k2, k3):
    # Layer 2 runs as Winograd whenever it is 3x3; layer 3's ring of its rows must then
    # hold layer 3's kernel plus the row a Winograd pair runs ahead (a 5x5 or 7x7 layer 3
    # read overwritten rows once).
    g = torch.Generator().manual_seed(k1 * 100 + k2 * 10 + k3)
    ws = []
    for cin, cout, k in [(1, 8, k1), (8, 6, k2), (6, 4, k3)]:
        ws += [torch.randn(cout, cin, k, k, generator=g) * 0.3, torch.randn(cout, generator=g) * 0.5]
    x = torch.rand(2, 1, 11, 13, generator=g)
    with cpu_isa(isa), poisoned_outputs(), threads(2):
        out = ops.espcn_forward(x, *ws, 2)
    h = x.double()
    for i, (w, b) in enumerate(zip(ws[::2], ws[1::2])):
        h = F.conv2d(h, w.double(), b.double(), padding=w.shape[-1] // 2)
        h = torch.tanh(h) if i < 2 else F.pixel_shuffle(h, 2)
    torch.testing.assert_close(out.double(), h, atol=2e-5, rtol=0)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_espcn_forward_shipped_weights_1080p(scale):
    """A 1080p frame out, the shipped weights, the acceptance bound of 1e-5."""
    model = ESPCN.from_pretrained(scale)
    h, w = 1080 // scale, 1920 // scale
    x = torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(scale))
    with poisoned_outputs():
        out = ops.espcn_forward(x, *weights(model), scale)
    torch.testing.assert_close(out.double(), reference64(model, x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_thread_counts_give_identical_results(n_threads):
    model = random_model(3)
    x = torch.rand(2, 1, 150, 40)
    with threads(1):
        expected = ops.espcn_forward(x, *weights(model), 3)
    with threads(n_threads):
        assert torch.equal(ops.espcn_forward(x, *weights(model), 3), expected)


def test_clamp():
    model = random_model(2, seed=5)
    x = torch.rand(1, 1, 9, 11)
    out = ops.espcn_forward(x, *weights(model), 2, True)
    ref = reference64(model, x)
    assert (ref < 0).any() and (ref > 1).any(), "the test needs values outside [0, 1]"
    torch.testing.assert_close(out.double(), ref.clamp(0, 1), atol=2e-5, rtol=0)


def test_non_contiguous_and_channels_last_inputs():
    model = random_model(3, seed=2)
    base = torch.rand(2, 1, 40, 60)
    strided = base[:, :, ::2, 1::2]
    assert not strided.is_contiguous()
    cl = torch.rand(2, 1, 20, 30).to(memory_format=torch.channels_last)
    for x in (strided, cl):
        torch.testing.assert_close(
            ops.espcn_forward(x, *weights(model), 3).double(), reference64(model, x), atol=2e-5, rtol=0
        )


def test_empty_batch():
    model = random_model(2)
    assert ops.espcn_forward(torch.rand(0, 1, 5, 5), *weights(model), 2).shape == (0, 1, 10, 10)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("k,cin,cout", [(1, 3, 5), (3, 64, 32), (5, 1, 64), (7, 2, 17)])
def test_conv2d_tanh(isa, k, cin, cout):
    g = torch.Generator().manual_seed(k)
    x = torch.rand(2, cin, 19, 23, generator=g)
    w = torch.randn(cout, cin, k, k, generator=g) * 0.3
    b = torch.randn(cout, generator=g)
    with cpu_isa(isa), poisoned_outputs():
        out = ops.conv2d_tanh(x, w, b)
    ref = torch.tanh(F.conv2d(x.double(), w.double(), b.double(), padding=k // 2))
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("scale,cout,clamp", [(1, 1, False), (2, 1, True), (3, 1, False), (4, 2, True), (5, 1, True)])
@pytest.mark.parametrize("width", [10, 37])
def test_conv2d_pixel_shuffle(isa, scale, cout, clamp, width):
    # Scales 2-4 interleave whole vectors of pixels, then the columns left; others go pixel by pixel.
    g = torch.Generator().manual_seed(scale)
    x = torch.rand(2, 32, 17, width, generator=g) * 2 - 1
    w = torch.randn(cout * scale * scale, 32, 3, 3, generator=g) * 0.2
    b = torch.randn(cout * scale * scale, generator=g) * 0.5
    with cpu_isa(isa), poisoned_outputs():
        out = ops.conv2d_pixel_shuffle(x, w, b, scale, clamp)
    ref = F.pixel_shuffle(F.conv2d(x.double(), w.double(), b.double(), padding=1), scale)
    torch.testing.assert_close(out.double(), ref.clamp(0, 1) if clamp else ref, atol=1e-5, rtol=0)


def test_layer_ops_chain_to_the_reference():
    model = random_model(3, seed=9)
    s = model.state_dict()
    x = torch.rand(1, 1, 30, 41)
    h = ops.conv2d_tanh(x, s["feature_maps.0.weight"], s["feature_maps.0.bias"])
    h = ops.conv2d_tanh(h, s["feature_maps.2.weight"], s["feature_maps.2.bias"])
    out = ops.conv2d_pixel_shuffle(h, s["sub_pixel.0.weight"], s["sub_pixel.0.bias"], 3)
    torch.testing.assert_close(out.double(), reference64(model, x), atol=2e-5, rtol=0)


@pytest.mark.parametrize("isa", ISAS)
def test_tanh_is_accurate_to_float_rounding(isa):
    """A 1x1 identity conv is tanh alone: compare it with float64 tanh over the whole range."""
    values = torch.cat(
        [
            torch.linspace(-12, 12, 200001),
            torch.logspace(-30, 1.2, 20000),
            -torch.logspace(-30, 1.2, 20000),
            torch.tensor([0.0, -0.0, 0.625, -0.625, 0.6249999, 9.0, 10.0, 20.0, 1e30, -1e30]),
        ]
    )
    x = values.reshape(1, 1, 1, -1)
    with cpu_isa(isa):
        out = ops.conv2d_tanh(x, torch.ones(1, 1, 1, 1), torch.zeros(1)).flatten()
    exact = torch.tanh(values.double())
    ulp = (exact.float().abs() * 2**-23).clamp_min(2**-149).double()
    errors = (out.double() - exact).abs() / ulp
    assert errors.max().item() <= 2.0, (
        f"max error {errors.max().item():.2f} ulp at x = {values[errors.argmax()].item()}"
    )
    # odd: tanh(-x) == -tanh(x) exactly
    n = 20000
    assert torch.equal(out[200001 : 200001 + n], -out[200001 + n : 200001 + 2 * n])


# -- opcheck and torch.compile -----------------------------------------------------


def _op_samples():
    model = random_model(3, seed=4)
    s = model.state_dict()
    x = torch.rand(2, 1, 9, 7)
    h = torch.rand(2, 32, 9, 7)
    return [
        (torch.ops.espcn_fast.conv2d_tanh.default, (x, s["feature_maps.0.weight"], s["feature_maps.0.bias"])),
        (
            torch.ops.espcn_fast.conv2d_pixel_shuffle.default,
            (h, s["sub_pixel.0.weight"], s["sub_pixel.0.bias"], 3, True),
        ),
        (torch.ops.espcn_fast.espcn_forward.default, (x, *weights(model), 3, False)),
    ]


@pytest.mark.parametrize("index", range(3))
def test_opcheck(index):
    op, args = _op_samples()[index]
    torch.library.opcheck(op, args)


def test_torch_compile_traces_the_op():
    model = random_model(2, seed=3)
    ws = weights(model)
    fn = torch.compile(lambda x: ops.espcn_forward(x, *ws, 2), fullgraph=True)
    x = torch.rand(1, 1, 12, 10)
    torch.testing.assert_close(fn(x).double(), reference64(model, x), atol=2e-5, rtol=0)


# -- errors ------------------------------------------------------------------------


def _conv_args():
    return torch.rand(1, 2, 5, 5), torch.rand(3, 2, 3, 3), torch.rand(3)


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda x, w, b: (x[0], w, b), r"x must be a 4-D \(N, C, H, W\) tensor, got 3-D"),
        (lambda x, w, b: (x[:, :, :0], w, b), "x must have H and W >= 1"),
        (lambda x, w, b: (x.double(), w, b), "x must be float32 on cpu, got float64"),
        (lambda x, w, b: ((x * 255).to(torch.uint8), w, b), "x must be float32 on cpu, got uint8"),
        (lambda x, w, b: (x, w.double(), b), "weight must be float32, got float64"),
        (lambda x, w, b: (x, w, b.half()), "bias must be float32, got float16"),
        (lambda x, w, b: (x, w[0], b), r"weight must be 4-D"),
        (lambda x, w, b: (x, w[:, :, :, :2], b), "weight must have a square kernel, got 3x2"),
        (lambda x, w, b: (x, torch.rand(3, 2, 2, 2), b), "odd kernel size"),
        (lambda x, w, b: (x, torch.rand(3, 2, 9, 9), b), "kernel size 9 is larger than the supported 7"),
        (lambda x, w, b: (x, torch.rand(3, 1, 3, 3), b), "weight expects 1 input channel"),
        (lambda x, w, b: (x, w, torch.rand(4)), r"bias must have shape \(3,\)"),
    ],
)
def test_conv2d_tanh_errors(change, match):
    with pytest.raises(RuntimeError, match=match):
        ops.conv2d_tanh(*change(*_conv_args()))


def test_pixel_shuffle_errors():
    x = torch.rand(1, 2, 5, 5)
    with pytest.raises(RuntimeError, match="scale must be >= 1, got 0"):
        ops.conv2d_pixel_shuffle(x, torch.rand(4, 2, 3, 3), torch.rand(4), 0)
    with pytest.raises(RuntimeError, match="weight has 5 output channels, not a multiple of scale\\^2 = 4"):
        ops.conv2d_pixel_shuffle(x, torch.rand(5, 2, 3, 3), torch.rand(5), 2)
    # HR rows and columns are int32 in the kernels: a very wide image is refused before any allocation.
    wide = torch.rand(1, 2, 1, 1).expand(1, 2, 1, 2**29)
    with pytest.raises(RuntimeError, match=r"x is 1x536870912; at scale 4 each side must stay under 536854528 pixels"):
        ops.conv2d_pixel_shuffle(wide, torch.rand(16, 2, 3, 3), torch.rand(16), 4)
    with pytest.raises(RuntimeError, match=r"at scale 1 each side must stay under 2147418112"):
        ops.conv2d_tanh(torch.rand(1, 2, 1, 1).expand(1, 2, 1, 2**31 - 2**16), torch.rand(3, 2, 3, 3), torch.rand(3))
    # scale^2 would overflow int64 (to 0: the process died of SIGFPE before the check took two steps).
    with pytest.raises(
        RuntimeError, match="weight has 4 output channels, not a multiple of scale\\^2 = 4294967296\\^2"
    ):
        ops.conv2d_pixel_shuffle(x, torch.rand(4, 2, 3, 3), torch.rand(4), 2**32)


def test_espcn_forward_errors_name_the_argument():
    ws = weights(random_model(3))
    x = torch.rand(1, 1, 6, 6)
    bad = list(ws)
    bad[2] = torch.rand(32, 63, 3, 3)  # w2 expects 64 input channels
    with pytest.raises(RuntimeError, match="w2 expects 63 input channel\\(s\\) but its input has 64"):
        ops.espcn_forward(x, *bad, 3)
    with pytest.raises(RuntimeError, match="w3 has 9 output channels, not a multiple of scale\\^2 = 4"):
        ops.espcn_forward(x, *ws, 2)
    with pytest.raises(RuntimeError, match="w1 expects 1 input channel\\(s\\) but its input has 3"):
        ops.espcn_forward(torch.rand(1, 3, 6, 6), *ws, 3)
    bad = list(ws)
    bad[5] = torch.rand(8)
    with pytest.raises(RuntimeError, match=r"b3 must have shape \(9,\)"):
        ops.espcn_forward(x, *bad, 3)


@pytest.mark.parametrize(
    "change, match",
    [
        (
            lambda x, ws: (torch.rand(1, 3, 6, 6), ws),
            r"espcn_fast::espcn_forward: w1 expects 1 input channel\(s\) but its input has 3",
        ),
        (
            lambda x, ws: (x, ws[:2] + [ws[2][:, :60]] + ws[3:]),
            r"w2 expects 60 input channel\(s\) but its input has 64",
        ),
        (
            lambda x, ws: (x, ws[:4] + [ws[4][0]] + ws[5:]),
            r"w3 must be 4-D \(out_channels, in_channels, k, k\), got shape \[32, 3, 3\]",
        ),
        (
            lambda x, ws: (x, ws[:4] + [ws[4][:8]] + [ws[5][:8]]),
            r"w3 has 8 output channels, not a multiple of scale\^2 = 9",
        ),
        (lambda x, ws: (x[0], ws), r"x must be a 4-D \(N, C, H, W\) tensor, got 3-D"),
        (lambda x, ws: (x[:, :, :0], ws), r"x must have H and W >= 1, got shape \[1, 1, 0, 6\]"),
    ],
)
def test_fake_kernel_errors_name_the_op_and_argument(change, match):
    # What torch.compile traces: the fake kernel must refuse what the real one refuses, in its words.
    from torch._subclasses.fake_tensor import FakeTensorMode

    x, ws = change(torch.rand(1, 1, 6, 6), weights(random_model(3)))
    with FakeTensorMode() as mode:
        args = [mode.from_tensor(t) for t in [x, *ws]]
        with pytest.raises(RuntimeError, match=match):
            torch.ops.espcn_fast.espcn_forward(*args, 3, False, "fp32")
    with pytest.raises(RuntimeError, match=match.replace("espcn_fast::espcn_forward: ", "")):
        ops.espcn_forward(x, *ws, 3)  # the real kernel, for comparison


def test_espcn_forward_precision_errors_on_cpu():
    ws = weights(random_model(3))
    x = torch.rand(1, 1, 6, 6)
    with pytest.raises(
        RuntimeError, match="the CPU kernels compute in fp32, bf16 or int8; precision 'fp16' runs on CUDA tensors only"
    ):
        ops.espcn_forward(x, *ws, 3, False, "fp16")
    with pytest.raises(RuntimeError, match="unknown precision 'fp8'; choose fp32, tf32, fp16, bf16 or int8"):
        ops.espcn_forward(x, *ws, 3, False, "fp8")
