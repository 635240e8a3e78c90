"""The CPU's bf16 and int8 kernels against their arithmetic (``reduced_precision.forward``) in float64."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import pytest
import torch

from espcn_fast import FastESPCN, ops, reduced_precision

from .kernel_checks import forced_cpu_isa, poisoned_outputs, random_model, threads, weights

pytestmark = pytest.mark.skipif(not ops.HAVE_EXTENSION, reason=f"{ops.EXTENSION_ERROR}")

PRECISIONS = ["bf16", "int8"]
# The kernels: each precision's widest, and int8 on 256-bit vectors (AVX-VNNI, or the same kernels
# in EVEX form on an AVX-512 CPU), which ESPCN_FAST_CPU_ISA=avx2 picks.
KERNELS = ["bf16", "int8", "int8-256"]


def _runs(precision: str) -> str | None:
    """The kernels that run ``precision`` here, or None."""
    try:
        return ops.cpu_isa(precision)
    except RuntimeError:
        return None


def needs(precision: str):
    """Skip where this CPU lacks the precision's instruction set."""
    if _runs(precision) is None:
        pytest.skip(f"this CPU has no {precision} kernels")


@contextmanager
def running(kernel: str) -> Iterator[str]:
    """Inside, the op runs ``kernel`` (one of :data:`KERNELS`); yields its precision."""
    precision = kernel.split("-")[0]
    with forced_cpu_isa("avx2") if kernel == "int8-256" else nullcontext():
        needs(precision)
        if kernel == "int8-256":
            assert ops.cpu_isa(precision) in ("avx-vnni", "avx-vnni-evex")
        yield precision


def kernel_weights(ws: list[torch.Tensor], precision: str) -> list[torch.Tensor]:
    """The op's weights: bfloat16 for bf16, float32 for int8; biases float32."""
    dtype = ops.WEIGHT_DTYPES[precision]
    return [t.to(dtype) if i % 2 == 0 else t for i, t in enumerate(ws)]


def reference(x: torch.Tensor, ws: list[torch.Tensor], scale: int, precision: str, clamp: bool = False):
    out = reduced_precision.forward(x.double(), [t.double() for t in ws], scale, precision)
    return out.clamp(0, 1) if clamp else out


def assert_matches(out: torch.Tensor, ref: torch.Tensor, ws: list[torch.Tensor], precision: str) -> None:
    """Every element written and within the precision's rounding of the reference.

    The kernels compute the reference's roundings, so outputs agree to float32 rounding except
    where an activation lies within the kernels' tanh error (3e-7) and float32 sums of a rounding
    boundary (a half step of 127 a for int8, of a bf16 mantissa for bf16) and is stored one step
    the other way. A layer-2 activation one step off moves an output by at most one step times
    the largest |w3|; layer-1 ones reach it damped by layer 2. Such flips are rare (measured on
    these random models: errors up to 3.0 steps x max|w3|, a mean under 0.03 of that, a relative
    error under 3e-4), so the bounds below leave room for a few more without hiding a wrong tap,
    channel or row, which moves outputs by many steps everywhere.
    """
    assert out.shape == ref.shape
    out = out.double()
    assert torch.isfinite(out).all(), f"{int((~torch.isfinite(out)).sum())} outputs unwritten (NaN)"
    unit = (1 / 127 if precision == "int8" else 2**-8) * float(ws[4].abs().max())
    err = (out - ref).abs()
    assert float(err.max()) <= 6 * unit, f"max error {float(err.max()) / unit:.2f} steps x max|w3|"
    assert float(err.mean()) <= 0.1 * unit, f"mean error {float(err.mean()) / unit:.3f} steps x max|w3|"
    rel = float((out - ref).norm() / ref.norm())
    assert rel <= 1e-3, f"relative error {rel:.2e}"


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 1, 2, 3), (2, 1, 7, 13), (1, 1, 37, 53), (3, 1, 131, 29)])
def test_random_weights(kernel, scale, shape):
    with running(kernel) as precision:
        ws = weights(random_model(scale, seed=scale))
        x = torch.rand(shape, generator=torch.Generator().manual_seed(shape[2]))
        with poisoned_outputs(), threads(2):
            out = ops.espcn_forward(x, *kernel_weights(ws, precision), scale, False, precision)
        assert_matches(out, reference(x, ws, scale, precision), ws, precision)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("c1, c2, ks", [(13, 7, (5, 3, 3)), (8, 6, (3, 3, 5)), (6, 5, (1, 5, 3)), (9, 3, (7, 1, 7))])
def test_other_widths_and_kernel_sizes(kernel, c1, c2, ks):
    with running(kernel) as precision:
        # Channel counts that are not whole groups of 2 (bf16) or 4 (int8), and every kernel size.
        g = torch.Generator().manual_seed(c1 * 10 + c2)
        ws = []
        for cin, cout, k in [(1, c1, ks[0]), (c1, c2, ks[1]), (c2, 4, ks[2])]:
            ws += [torch.randn(cout, cin, k, k, generator=g) * 0.3, torch.randn(cout, generator=g) * 0.5]
        x = torch.rand(2, 1, 11, 19, generator=g)
        with poisoned_outputs(), threads(2):
            out = ops.espcn_forward(x, *kernel_weights(ws, precision), 2, False, precision)
        assert_matches(out, reference(x, ws, 2, precision), ws, precision)


@pytest.mark.parametrize("kernel", KERNELS)
def test_saturated_activations(kernel):
    # Weights large enough that most pre-activations pass +-9, where the kernels' tanh clamps its input.
    with running(kernel) as precision:
        ws = [t * 40 if i in (0, 2) else t for i, t in enumerate(weights(random_model(2, seed=11)))]
        x = torch.rand(1, 1, 9, 35, generator=torch.Generator().manual_seed(2))
        a1 = torch.nn.functional.conv2d(x, ws[0], ws[1], padding=2)
        assert (a1.abs() > 9).float().mean() > 0.5
        with poisoned_outputs(), threads(2):
            out = ops.espcn_forward(x, *kernel_weights(ws, precision), 2, False, precision)
        assert_matches(out, reference(x, ws, 2, precision), ws, precision)


@pytest.mark.parametrize("kernel", KERNELS)
def test_shipped_weights_1080p_frame(kernel):
    """The shipped x3 weights on a 360x640 frame: every output within one 8-bit level of the
    reference, and on average within a hundredth of one (measured: bf16 2.7e-6, int8 less)."""
    with running(kernel) as precision:
        model = FastESPCN.from_pretrained(3)
        ws = weights(model)
        x = torch.rand(1, 1, 360, 640, generator=torch.Generator().manual_seed(7))
        with poisoned_outputs():
            out = ops.espcn_forward(x, *kernel_weights(ws, precision), 3, True, precision)
        ref = reference(x, ws, 3, precision, clamp=True)
        err = (out.double() - ref).abs()
        assert float(err.max()) < 1 / 255, f"max error {float(err.max()):.3g}"
        assert float(err.mean()) < 0.01 / 255


@pytest.mark.parametrize("kernel", KERNELS)
def test_strips_and_threads_give_identical_results(kernel):
    with running(kernel) as precision:
        ws = kernel_weights(weights(random_model(3, seed=5)), precision)
        x = torch.rand(3, 1, 45, 37, generator=torch.Generator().manual_seed(1))
        outs = []
        for n in (1, 2, 3):
            with threads(n):
                outs.append(ops.espcn_forward(x, *ws, 3, False, precision))
        assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
        # A batch is its images run one by one.
        alone = torch.cat([ops.espcn_forward(x[i : i + 1], *ws, 3, False, precision) for i in range(3)])
        assert torch.equal(outs[0], alone)


@pytest.mark.parametrize("kernel", KERNELS)
def test_clamp_and_non_contiguous_input(kernel):
    with running(kernel) as precision:
        ws = kernel_weights(weights(random_model(2, seed=6)), precision)
        x = torch.rand(2, 1, 20, 30)
        raw = ops.espcn_forward(x, *ws, 2, False, precision)
        assert raw.min() < 0 or raw.max() > 1  # the random model leaves [0, 1], so the clamp is exercised
        torch.testing.assert_close(ops.espcn_forward(x, *ws, 2, True, precision), raw.clamp(0, 1), rtol=0, atol=0)
        strided = torch.rand(2, 1, 30, 20).transpose(2, 3)
        torch.testing.assert_close(
            ops.espcn_forward(strided, *ws, 2, False, precision),
            ops.espcn_forward(strided.contiguous(), *ws, 2, False, precision),
            rtol=0,
            atol=0,
        )


@pytest.mark.parametrize("kernel", KERNELS)
def test_empty_batch(kernel):
    with running(kernel) as precision:
        ws = kernel_weights(weights(random_model(2)), precision)
        assert ops.espcn_forward(torch.rand(0, 1, 5, 5), *ws, 2, False, precision).shape == (0, 1, 10, 10)


def test_int8_quantizes_as_the_reference():
    """Weights already on their int8 grid give the same output as the float ones they round from."""
    needs("int8")
    ws = weights(random_model(3, seed=8))
    on_grid = list(ws)
    on_grid[2] = reduced_precision.fake_quantize_weight(ws[2])
    on_grid[4] = reduced_precision.fake_quantize_weight(ws[4])
    x = torch.rand(1, 1, 16, 24)
    a = ops.espcn_forward(x, *ws, 3, False, "int8")
    b = ops.espcn_forward(x, *on_grid, 3, False, "int8")
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


# -- int8 layer-1 ranges ---------------------------------------------------------------


def _ranges(seed: int, channels: int = 64) -> torch.Tensor:
    """Ranges across (0, 1]: most channels of random weights then pass theirs (clamped codes)."""
    g = torch.Generator().manual_seed(seed)
    r = torch.rand(channels, generator=g) * 0.9 + 0.05
    r[0] = 1.0
    return r


@pytest.mark.parametrize("kernel", ["int8", "int8-256"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_int8_layer1_ranges(kernel, scale):
    with running(kernel) as precision:
        ws = weights(random_model(scale, seed=20 + scale))
        ranges = _ranges(scale)
        x = torch.rand(2, 1, 23, 41, generator=torch.Generator().manual_seed(scale))
        with poisoned_outputs(), threads(2):
            out = ops.espcn_forward(x, *ws, scale, False, precision, ranges)
        ref = reduced_precision.forward(x.double(), [t.double() for t in ws], scale, "int8", a1_ranges=ranges)
        assert_matches(out, ref, ws, precision)
        # The clamp at both ends is exercised, and the ranges move the result far beyond the tolerance.
        a1 = torch.tanh(reduced_precision.int8_layer1(x, ws[0], ws[1])) / ranges[None, :, None, None]
        assert float(a1.max()) > 1.05 and float(a1.min()) < -1.05
        full = reduced_precision.forward(x.double(), [t.double() for t in ws], scale, "int8")
        assert float((ref - full).abs().max()) > 0.1
        # Ranges of 1 are the full-range arithmetic, bit for bit.
        ones = ops.espcn_forward(x, *ws, scale, False, precision, torch.ones(64))
        torch.testing.assert_close(ones, ops.espcn_forward(x, *ws, scale, False, precision), rtol=0, atol=0)


def test_int8_layer1_ranges_odd_channel_counts():
    needs("int8")
    g = torch.Generator().manual_seed(31)
    ws = []
    for cin, cout, k in [(1, 13, 5), (13, 7, 3), (7, 4, 3)]:
        ws += [torch.randn(cout, cin, k, k, generator=g) * 0.3, torch.randn(cout, generator=g) * 0.5]
    ranges = _ranges(5, 13)
    x = torch.rand(1, 1, 11, 19, generator=g)
    with poisoned_outputs():
        out = ops.espcn_forward(x, *ws, 2, False, "int8", ranges)
    ref = reduced_precision.forward(x.double(), [t.double() for t in ws], 2, "int8", a1_ranges=ranges)
    assert_matches(out, ref, ws, "int8")


def test_int8_layer1_ranges_errors():
    needs("int8")
    ws = weights(random_model(2))
    x = torch.rand(1, 1, 6, 6)
    op = "espcn_fast::espcn_forward"
    with pytest.raises(RuntimeError, match=f"{op}: a1_ranges applies to precision 'int8' only"):
        ops.espcn_forward(x, *ws, 2, False, "fp32", torch.ones(64))
    with pytest.raises(RuntimeError, match="a1_ranges must have shape \\[64\\] \\(w1's output channels\\)"):
        ops.espcn_forward(x, *ws, 2, False, "int8", torch.ones(32))
    with pytest.raises(RuntimeError, match="a1_ranges must be float32, got Double"):
        ops.espcn_forward(x, *ws, 2, False, "int8", torch.ones(64, dtype=torch.float64))
    for bad, shown in ((0.0, "0"), (1.5, "1.5"), (float("nan"), "nan"), (-0.5, "-0.5")):
        ranges = torch.ones(64)
        ranges[7] = bad
        with pytest.raises(RuntimeError, match=f"a1_ranges\\[7\\] is {shown}; the ranges of tanh outputs lie in"):
            ops.espcn_forward(x, *ws, 2, False, "int8", ranges)
    with pytest.raises(ValueError, match="a1_ranges applies to precision 'int8' only"):
        reduced_precision.forward(x, ws, 2, "bf16", a1_ranges=torch.ones(64))
    with pytest.raises(ValueError, match="a1_ranges must lie in \\(0, 1\\]"):
        reduced_precision.forward(x, ws, 2, "int8", a1_ranges=torch.zeros(64))
    with pytest.raises(ValueError, match="a1_ranges must be a floating-point tensor of shape \\[64\\]"):
        reduced_precision.forward(x, ws, 2, "int8", a1_ranges=torch.ones(63))


def test_int8_layer1_ranges_opcheck_and_compile():
    needs("int8")
    ws = weights(random_model(3, seed=4))
    ranges = _ranges(2)
    x = torch.rand(2, 1, 9, 7)
    torch.library.opcheck(torch.ops.espcn_fast.espcn_forward.default, (x, *ws, 3, False, "int8", ranges))
    fn = torch.compile(lambda x: ops.espcn_forward(x, *ws, 3, False, "int8", ranges), fullgraph=True)
    torch.testing.assert_close(fn(x), ops.espcn_forward(x, *ws, 3, False, "int8", ranges), rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="a1_ranges applies to precision 'int8' only"):
        # the fake kernel (what torch.compile traces) refuses as the C++ op does
        ops.fake_kernels("espcn_fast")["espcn_forward"](x, *ws, 3, False, "bf16", torch.ones(64))


def test_fast_espcn_int8_uses_the_models_ranges():
    needs("int8")
    model = random_model(3, seed=12)
    state = dict(model.state_dict())
    state["a1_ranges"] = _ranges(3)
    model.load_state_dict(state)
    fast = FastESPCN.from_reference(model, precision="int8")
    x = torch.rand(1, 1, 13, 17)
    expected = ops.espcn_forward(x, *weights(model)[:6], 3, False, "int8", state["a1_ranges"])
    torch.testing.assert_close(fast(x), expected, rtol=0, atol=0)
    without = ops.espcn_forward(x, *weights(model)[:6], 3, False, "int8")
    assert float((fast(x) - without).abs().max()) > 1e-3
    # The fp32 and bf16 paths compute without them (they are int8's grid, not part of the network).
    for precision in ("fp32", "bf16"):
        if _runs(precision) is not None:
            fast_p = FastESPCN.from_reference(model, precision=precision, backend="cpu")
            ws = kernel_weights(weights(model)[:6], precision)
            torch.testing.assert_close(fast_p(x), ops.espcn_forward(x, *ws, 3, False, precision), rtol=0, atol=0)


# -- FastESPCN ------------------------------------------------------------------------


@pytest.mark.parametrize("precision", PRECISIONS)
def test_fast_espcn_runs_the_precision_on_cpu(precision):
    needs(precision)
    model = random_model(3, seed=9)
    fast = FastESPCN.from_reference(model, precision=precision)
    x = torch.rand(1, 1, 21, 17)
    assert fast.backend_for(x) == "cpu"
    expected = ops.espcn_forward(x, *kernel_weights(weights(model), precision), 3, False, precision)
    torch.testing.assert_close(fast(x), expected, rtol=0, atol=0)
    half = ops.espcn_forward(x.half().float(), *kernel_weights(weights(model), precision), 3, False, precision)
    torch.testing.assert_close(fast(x.half()), half.half(), rtol=0, atol=0)  # converted in and out


def test_fast_espcn_precision_errors():
    with pytest.raises(ValueError, match="backend 'cpu' computes in fp32, bf16, int8; precision 'fp16'"):
        FastESPCN(3, backend="cpu", precision="fp16")
    for backend in ("cuda", "triton"):
        with pytest.raises(ValueError, match="precision 'int8' runs on the CPU only"):
            FastESPCN(3, backend=backend, precision="int8")


# -- opcheck, torch.compile ------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
def test_opcheck(kernel):
    with running(kernel) as precision:
        ws = kernel_weights(weights(random_model(3, seed=4)), precision)
        torch.library.opcheck(
            torch.ops.espcn_fast.espcn_forward.default, (torch.rand(2, 1, 9, 7), *ws, 3, False, precision)
        )


def test_torch_compile_traces_the_int8_op():
    needs("int8")
    ws = weights(random_model(2, seed=3))
    fn = torch.compile(lambda x: ops.espcn_forward(x, *ws, 2, False, "int8"), fullgraph=True)
    x = torch.rand(1, 1, 12, 10)
    torch.testing.assert_close(fn(x), ops.espcn_forward(x, *ws, 2, False, "int8"), rtol=0, atol=0)


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("precision, forced", [("bf16", "avx2"), ("bf16", "portable"), ("int8", "portable")])
def test_forced_lower_isa_names_the_instruction_set(precision, forced):
    needed = (
        "AVX512-VNNI or AVX-VNNI \\(vpdpbusd\\)" if precision == "int8" else "AVX-512 with AVX512-BF16 \\(vdpbf16ps\\)"
    )
    ws = kernel_weights(weights(random_model(2)), precision)
    with forced_cpu_isa(forced):
        match = f"precision '{precision}' on the CPU needs {needed}, and ESPCN_FAST_CPU_ISA={forced} forces other"
        with pytest.raises(RuntimeError, match=match):
            ops.espcn_forward(torch.rand(1, 1, 4, 4), *ws, 2, False, precision)
        with pytest.raises(RuntimeError, match=match):
            ops.cpu_isa(precision)
        assert ops.cpu_isa() == forced  # fp32 still runs


@pytest.mark.parametrize("kernel", ["int8", "int8-256"])
@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_int8_layer1_sums_at_their_bound(kernel, k):
    """Inputs of +-1 whose signs follow every weight's: each layer-1 sum reaches k^2 x 32767 x the
    weight levels, the most int32 must hold (an overflow would wrap to the other sign)."""
    with running(kernel) as precision:
        g = torch.Generator().manual_seed(k)
        # Every weight at the largest level (one magnitude), the same sign pattern in every channel.
        signs = torch.randn(1, 1, k, k, generator=g).sign()
        ws = [(signs * 0.5).expand(8, 1, k, k).contiguous(), torch.zeros(8)]
        ws += [torch.randn(4, 8, 3, 3, generator=g) * 0.3, torch.randn(4, generator=g) * 0.1]
        ws += [torch.randn(4, 4, 3, 3, generator=g) * 0.3, torch.randn(4, generator=g) * 0.1]
        x = torch.ones(1, 1, 3 * k, 3 * k)
        c = 3 * k // 2  # the centre pixel's window holds the pattern's signs
        x[0, 0, c - k // 2 : c + k // 2 + 1, c - k // 2 : c + k // 2 + 1] = signs[0, 0]
        q = reduced_precision.quantize_weight(ws[0], reduced_precision.layer1_levels(k))[0].int()
        assert int((q[0].abs() * 32767).sum()) == k * k * 32767 * reduced_precision.layer1_levels(k) < 2**31
        with poisoned_outputs():
            out = ops.espcn_forward(x, *kernel_weights(ws, precision), 2, False, precision)
        assert_matches(out, reference(x, ws, 2, precision), ws, precision)


@pytest.mark.parametrize("kernel", ["int8", "int8-256"])
def test_int8_refuses_inputs_outside_its_range(kernel):
    with running(kernel) as precision:
        ws = kernel_weights(weights(random_model(2)), precision)
        x = torch.rand(1, 1, 6, 6)
        x[0, 0, 1, 2], x[0, 0, 4, 4] = 1.001, -1.5
        with pytest.raises(RuntimeError, match="x holds 2 value\\(s\\) outside \\[-1, 1\\]; precision 'int8' reads"):
            ops.espcn_forward(x, *ws, 2, False, precision)
        with pytest.raises(ValueError, match="precision 'int8' reads its input as 16-bit fixed point on \\[-1, 1\\]"):
            reduced_precision.forward(x, weights(random_model(2)), 2, precision)
        x.clamp_(-1, 1)  # the range's ends are in it
        assert torch.isfinite(ops.espcn_forward(x, *ws, 2, False, precision)).all()
        with pytest.raises(RuntimeError, match="precision 'int8' takes one input channel \\(the Y plane\\), got 2"):
            w1 = torch.randn(64, 2, 5, 5)
            ops.espcn_forward(torch.rand(1, 2, 6, 6), w1, *ws[1:], 2, False, precision)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_non_finite_inputs_are_refused(precision):
    needs(precision)
    ws = kernel_weights(weights(random_model(2)), precision)
    x = torch.rand(1, 1, 6, 6)
    x[0, 0, 1, 2] = float("nan")
    x[0, 0, 3, 3] = float("inf")
    with pytest.raises(RuntimeError, match=f"x holds 2 NaN or infinite value\\(s\\); precision '{precision}'"):
        ops.espcn_forward(x, *ws, 2, False, precision)


def test_weight_dtypes_are_checked():
    ws = weights(random_model(2))
    x = torch.rand(1, 1, 6, 6)
    if _runs("bf16"):
        with pytest.raises(RuntimeError, match="w1 must be bfloat16, got float"):
            ops.espcn_forward(x, *ws, 2, False, "bf16")
    if _runs("int8"):
        with pytest.raises(RuntimeError, match="w1 must be float32, got bfloat16"):
            ops.espcn_forward(x, *kernel_weights(ws, "bf16"), 2, False, "int8")


def test_cpu_isa_names_the_kernels():
    assert ops.cpu_isa("fp32") in ("avx512", "avx2", "portable")
    for precision, names in (("bf16", ("avx512-bf16",)), ("int8", ("avx512-vnni", "avx-vnni"))):
        if _runs(precision):
            assert ops.cpu_isa(precision) in names
    if _runs("int8"):
        with forced_cpu_isa("avx2"):
            assert ops.cpu_isa("int8") in ("avx-vnni", "avx-vnni-evex")
    with pytest.raises(RuntimeError, match="precision 'fp16' has no CPU kernels"):
        ops.cpu_isa("fp16")


def test_reference_arithmetic_refuses_other_precisions():
    from espcn_fast.precision_model import PrecisionESPCN

    ws = weights(random_model(2))
    match = "unknown CPU precision 'fp16'; choose one of fp32, bf16, int8"
    with pytest.raises(ValueError, match=match):
        reduced_precision.forward(torch.rand(1, 1, 4, 4), ws, 2, "fp16")
    with pytest.raises(ValueError, match=match):
        PrecisionESPCN(random_model(2), "fp16")
