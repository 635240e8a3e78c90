"""The CUDA kernels against the float64 reference, each precision with its tolerance.

These run on a GPU machine (``benchmarks/gpu_check.sh``); elsewhere they skip
and say why. The kernels still compile and link on every CI run.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from espcn_fast import ESPCN, FastESPCN, backends, ops
from espcn_fast.fast import MAX_CUDA_GRAPHS

from .kernel_checks import (
    REL_TOL,
    assert_matches_reference,
    poisoned_outputs,
    random_model,
    reference64,
    relative_error,
    weights,
)


def _skip_reason() -> str | None:
    reason = backends.unavailable_reason("cuda")
    return None if reason is None else f"{reason}; the kernels run in benchmarks/gpu_check.sh"


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))

PRECISIONS = ["fp32", "tf32", "fp16", "bf16"]
# Odd and tiny sizes, several tiles with remainders in both directions, batches.
SHAPES = [(1, 1, 1, 1), (1, 1, 2, 3), (2, 1, 17, 23), (1, 1, 45, 97), (3, 1, 7, 250), (1, 1, 130, 31)]


def cuda_weights(model: ESPCN, precision: str) -> list[torch.Tensor]:
    wdtype = ops.WEIGHT_DTYPES[precision]
    return [t.cuda().to(wdtype if i % 2 == 0 else torch.float32) for i, t in enumerate(weights(model))]


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("shape", SHAPES)
def test_espcn_forward(precision, scale, shape):
    model = random_model(scale, seed=scale + shape[2])
    x = torch.rand(shape, generator=torch.Generator().manual_seed(shape[3]))
    with poisoned_outputs():
        out = ops.espcn_forward(x.cuda(), *cuda_weights(model, precision), scale, False, precision)
    assert out.dtype == torch.float32
    assert_matches_reference(out, reference64(model, x), precision)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_espcn_forward_shipped_weights_1080p(precision, scale):
    model = ESPCN.from_pretrained(scale)
    x = torch.rand(1, 1, 1080 // scale, 1920 // scale, generator=torch.Generator().manual_seed(scale))
    with poisoned_outputs():
        out = ops.espcn_forward(x.cuda(), *cuda_weights(model, precision), scale, False, precision)
    assert_matches_reference(out, reference64(model, x), precision)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_half_images_clamp_and_layouts(precision):
    model = random_model(3, seed=7)
    x = torch.rand(2, 1, 33, 41, generator=torch.Generator().manual_seed(7))
    ws = cuda_weights(model, precision)
    ref = reference64(model, x, clamp=True)
    with poisoned_outputs():
        half = ops.espcn_forward(x.cuda().half(), *ws, 3, True, precision)
    assert half.dtype == torch.float16
    assert half.min() >= 0 and half.max() <= 1
    assert relative_error(half, ref) <= max(REL_TOL[precision], 2e-3)
    # Non-contiguous and channels_last inputs compute the same thing.
    wide = torch.rand(2, 1, 33, 82, device="cuda")
    strided = wide[..., ::2]
    last = strided.contiguous().to(memory_format=torch.channels_last)
    expect = ops.espcn_forward(strided.contiguous(), *ws, 3, True, precision)
    torch.testing.assert_close(ops.espcn_forward(strided, *ws, 3, True, precision), expect)
    torch.testing.assert_close(ops.espcn_forward(last, *ws, 3, True, precision), expect)


def test_empty_batch_and_other_shapes_fall_back_to_layers():
    model = random_model(2, seed=1)
    ws = cuda_weights(model, "fp16")
    assert ops.espcn_forward(torch.rand(0, 1, 5, 5, device="cuda"), *ws, 2, False, "fp16").shape == (0, 1, 10, 10)
    # 3 colour channels and 16 feature maps: not the fused shape, runs the per-layer kernels in fp32.
    other = ESPCN(2, in_channels=3, out_channels=3, channels=16).eval()
    x = torch.rand(2, 3, 19, 21)
    out = ops.espcn_forward(x.cuda(), *[t.cuda() for t in weights(other)], 2)
    assert_matches_reference(out, reference64(other, x), "fp32")


@pytest.mark.parametrize("k, cin, cout", [(5, 1, 64), (3, 64, 32), (3, 5, 20), (1, 3, 7), (7, 2, 3)])
@pytest.mark.parametrize("half", [False, True])
def test_conv2d_tanh(k, cin, cout, half):
    g = torch.Generator().manual_seed(k * cin + cout)
    x, w, b = (
        torch.rand(2, cin, 21, 35, generator=g),
        torch.randn(cout, cin, k, k, generator=g) * 0.3,
        torch.randn(cout, generator=g),
    )
    xin = x.cuda().half() if half else x.cuda()
    with poisoned_outputs():
        out = ops.conv2d_tanh(xin, w.cuda(), b.cuda())
    ref = torch.tanh(F.conv2d((xin.float().cpu() if half else x).double(), w.double(), b.double(), padding=k // 2))
    torch.testing.assert_close(out.double().cpu(), ref, atol=2e-3 if half else 1e-5, rtol=0)


@pytest.mark.parametrize("scale, cout", [(2, 4), (3, 9), (4, 16), (2, 12), (3, 27), (2, 20), (5, 25)])
@pytest.mark.parametrize("clamp", [False, True])
def test_conv2d_pixel_shuffle(scale, cout, clamp):
    g = torch.Generator().manual_seed(scale * cout)
    x, w, b = (
        torch.rand(2, 32, 19, 23, generator=g),
        torch.randn(cout, 32, 3, 3, generator=g) * 0.1,
        torch.randn(cout, generator=g),
    )
    with poisoned_outputs():
        out = ops.conv2d_pixel_shuffle(x.cuda(), w.cuda(), b.cuda(), scale, clamp)
    ref = F.pixel_shuffle(F.conv2d(x.double(), w.double(), b.double(), padding=1), scale)
    torch.testing.assert_close(out.double().cpu(), ref.clamp(0, 1) if clamp else ref, atol=1e-5, rtol=0)


# -- opcheck, torch.compile, CUDA graphs ---------------------------------------------


def _op_samples():
    model = random_model(3, seed=4)
    s = {k: v.cuda() for k, v in model.state_dict().items()}
    x, h = torch.rand(2, 1, 9, 7, device="cuda"), torch.rand(2, 32, 9, 7, device="cuda")
    return [
        (torch.ops.espcn_fast.conv2d_tanh.default, (x, s["feature_maps.0.weight"], s["feature_maps.0.bias"])),
        (
            torch.ops.espcn_fast.conv2d_pixel_shuffle.default,
            (h, s["sub_pixel.0.weight"], s["sub_pixel.0.bias"], 3, True),
        ),
        (torch.ops.espcn_fast.espcn_forward.default, (x, *cuda_weights(model, "fp32"), 3, False, "fp32")),
        (torch.ops.espcn_fast.espcn_forward.default, (x, *cuda_weights(model, "fp16"), 3, False, "fp16")),
    ]


@pytest.mark.parametrize("index", range(4))
def test_opcheck(index):
    op, args = _op_samples()[index]
    torch.library.opcheck(op, args)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_torch_compile_fast_module(precision):
    ref = random_model(2, seed=3)
    fast = FastESPCN.from_reference(ref, backend="cuda", precision=precision).cuda()
    fn = torch.compile(fast, fullgraph=True)
    x = torch.rand(1, 1, 24, 20)
    with torch.no_grad():
        assert_matches_reference(fn(x.cuda()), reference64(ref, x), precision)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_cuda_graph_replay(precision):
    ref = random_model(3, seed=5)
    fast = FastESPCN.from_reference(ref, backend="cuda", precision=precision).cuda()
    static_x = torch.rand(2, 1, 40, 52, device="cuda")
    with torch.no_grad():
        fast(static_x)  # warm-up: weights converted, kernel attributes set
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = fast(static_x)
    for seed in range(3):
        x = torch.rand(2, 1, 40, 52, generator=torch.Generator().manual_seed(seed))
        static_x.copy_(x.cuda())
        graph.replay()
        assert_matches_reference(static_out, reference64(ref, x), precision)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_fast_module_cuda_graph_mode(precision):
    ref = random_model(2, seed=8)
    fast = FastESPCN.from_reference(ref, backend="cuda", precision=precision, cuda_graph=True).cuda()
    outs = []
    with torch.no_grad():
        for seed in range(3):
            x = torch.rand(1, 1, 30, 44, generator=torch.Generator().manual_seed(seed))
            out = fast(x.cuda())
            assert_matches_reference(out, reference64(ref, x), precision)
            outs.append(out)
        assert len(fast._graphs) == 1
        assert not torch.equal(outs[0], outs[1])  # each call returns its own output, not the graph's buffer
        fast(torch.rand(2, 1, 8, 8, device="cuda"))  # a new shape: a second graph
        assert len(fast._graphs) == 2
        fast.sub_pixel[0].bias.add_(
            1.0
        )  # fp16: new converted weights, a new capture; fp32: the graph reads the parameters
        x = torch.rand(1, 1, 30, 44)
        plain = ESPCN(2)
        plain.load_state_dict({k: v.cpu() for k, v in fast.state_dict().items()})
        assert_matches_reference(fast(x.cuda()), reference64(plain, x), precision)
        # A bounded cache: one graph per shape, the least recently used dropped first.
        shapes = [(1, 1, 8 + i, 9) for i in range(MAX_CUDA_GRAPHS + 3)]
        for shape in shapes:
            fast(torch.rand(shape, device="cuda"))
        assert len(fast._graphs) == MAX_CUDA_GRAPHS
        assert [k[0] for k in fast._graphs] == shapes[-MAX_CUDA_GRAPHS:]
        fast(torch.rand(shapes[-MAX_CUDA_GRAPHS], device="cuda"))  # a hit moves to the back
        assert next(iter(fast._graphs))[0] == shapes[-MAX_CUDA_GRAPHS + 1]
        # Captured under inference_mode, replayed outside it; clamp changed after a capture.
        fresh = FastESPCN.from_reference(ref, backend="cuda", precision=precision, cuda_graph=True).cuda()
        x = torch.rand(1, 1, 12, 13, device="cuda") * 3
        with torch.inference_mode():
            fresh(x)
        fresh(x)
        fresh.clamp = True
        assert float(fresh(x).max()) <= 1.0


# -- FastESPCN on CUDA -------------------------------------------------------------


def test_fast_module_converts_weights_once_and_follows_changes():
    ref = random_model(3, seed=9)
    fast = FastESPCN.from_reference(ref, backend="cuda", precision="fp16").cuda()
    x = torch.rand(1, 1, 16, 16, device="cuda")
    with torch.no_grad():
        first = fast(x)
        cached = fast._weights(x.device, "fp16")
        assert cached[0].dtype == torch.float16 and cached[1].dtype == torch.float32
        assert fast._weights(x.device, "fp16")[0] is cached[0]
        fast.sub_pixel[0].bias.add_(1.0)
        assert not torch.allclose(fast(x), first)
        assert fast.backend_for(x) == "cuda"


def test_fast_module_dtypes():
    ref = random_model(2, seed=2)
    fast = FastESPCN.from_reference(ref, precision="bf16").cuda()
    x = torch.rand(1, 1, 20, 20)
    with torch.no_grad():
        assert fast(x.cuda().bfloat16()).dtype == torch.bfloat16
        assert fast(x.cuda().half()).dtype == torch.float16
        with pytest.raises(TypeError, match="backend 'cuda' takes float32/float16/bfloat16"):
            FastESPCN.from_reference(ref, backend="cuda").cuda()(x.cuda().double())


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_set5_psnr_within_a_hundredth_of_fp32(data_dir, precision):
    """The Set5 images travel to the GPU machine in an ignored folder (see benchmarks/gpu_check.sh)."""
    from espcn_fast.evaluate import evaluate_sets

    def set5(p: str) -> float:
        return evaluate_sets(FastESPCN.from_pretrained(3, device="cuda", precision=p), 3, ["Set5"], data_dir)[0].psnr

    fp32, low = set5("fp32"), set5(precision)
    assert math.isclose(low, fp32, abs_tol=0.01), (precision, low, fp32)


# -- errors ------------------------------------------------------------------------


def test_errors_name_the_argument():
    model = random_model(3)
    x = torch.rand(1, 1, 6, 6, device="cuda")
    ws16 = cuda_weights(model, "fp16")
    ws32 = cuda_weights(model, "fp32")
    with pytest.raises(RuntimeError, match="w1 must be float16, got float32"):
        ops.espcn_forward(x, *ws32, 3, False, "fp16")
    with pytest.raises(RuntimeError, match="w2 must be float32, got float16"):
        ops.espcn_forward(x, ws32[0], ws32[1], *ws16[2:4], *ws32[4:], 3, False, "fp32")
    with pytest.raises(RuntimeError, match="unknown precision 'fp8'"):
        ops.espcn_forward(x, *ws32, 3, False, "fp8")
    with pytest.raises(RuntimeError, match="w1 is on cpu but x is on cuda"):
        ops.espcn_forward(x, *weights(model), 3)
    with pytest.raises(RuntimeError, match="x must be float32 or float16 on cuda, got float64"):
        ops.espcn_forward(x.double(), *ws32, 3)
    with pytest.raises(RuntimeError, match="weight must be float32, got float16"):
        ops.conv2d_tanh(
            torch.rand(1, 2, 5, 5, device="cuda"),
            torch.rand(3, 2, 3, 3, device="cuda").half(),
            torch.rand(3, device="cuda"),
        )


@pytest.mark.parametrize("precision", PRECISIONS)
def test_clamp_keeps_nan(precision):
    # As torch.clamp and the CPU kernels (fminf/fmaxf turned NaN into 0).
    model = random_model(2, seed=5)
    x = torch.rand(1, 1, 7, 8)
    x[0, 0, 3, 4] = float("nan")
    out = ops.espcn_forward(x.cuda(), *cuda_weights(model, precision), 2, True, precision)
    expected = reference64(model, x, clamp=True).isnan()
    assert expected.any() and torch.equal(out.isnan().cpu(), expected)
    h = torch.rand(1, 32, 5, 6, device="cuda")
    h[0, 7, 2, 2] = float("nan")
    w3, b3 = cuda_weights(model, "fp32")[4:]
    layer = ops.conv2d_pixel_shuffle(h, w3[:4], b3[:4], 2, True)
    assert layer.isnan().any() and not layer.isnan().all()


def test_bf16_takes_images_past_the_fp16_range():
    # bf16's layer 1 runs in fp16: pixels past +-65504 saturate (as inf they made every output NaN).
    model = random_model(2, seed=1)
    x = torch.full((1, 1, 6, 9), 65535.0, device="cuda")
    x[..., ::2] = -70000.0
    ws = cuda_weights(model, "bf16")
    out = ops.espcn_forward(x, *ws, 2, False, "bf16")
    assert torch.isfinite(out).all()
    assert torch.equal(out, ops.espcn_forward(x.clamp(-65504, 65504), *ws, 2, False, "bf16"))


def test_video_network_stage_on_the_gpu_matches_the_cpu():
    # The GPU pipeline's middle stage (pinned copies, a side stream, batches submitted before the
    # previous one is finished, a short last batch) against the same stage on the CPU.
    import numpy as np

    from espcn_fast.video import _Frame, _Network

    g = np.random.default_rng(3)
    frames = [
        _Frame(
            i,
            g.integers(16, 236, (18, 26), dtype=np.uint8),
            g.integers(16, 241, (9, 13), dtype=np.uint8),
            g.integers(16, 241, (9, 13), dtype=np.uint8),
        )
        for i in range(7)
    ]
    batches = [frames[0:3], frames[3:6], frames[6:7]]
    ref = random_model(3, seed=12)

    def run(device: str, model) -> list[tuple]:
        net = _Network(model, 3, torch.device(device))
        handles = [net.submit(b) for b in batches]  # all in flight before the first is finished
        return [row for h in handles for row in net.finish(h)]

    gpu = run("cuda", FastESPCN.from_reference(ref, backend="cuda", cuda_graph=True).cuda())
    cpu = run("cpu", FastESPCN.from_reference(ref, backend="cpu"))
    # The GPU's chroma: torch's float bicubic, rounded (the CPU stage uses its uint8 kernel instead).
    from espcn_fast.quantize import round_255

    chroma = torch.from_numpy(np.stack([np.stack([f.u, f.v]) for f in frames])).float()
    chroma = round_255(torch.nn.functional.interpolate(chroma, size=(27, 39), mode="bicubic", align_corners=False))
    assert [r[0] for r in gpu] == list(range(7))
    for i, ((_, y_g, u_g, v_g), (_, y_c, _, _)) in enumerate(zip(gpu, cpu)):
        assert y_g.shape == y_c.shape == (54, 78) and u_g.shape == v_g.shape == (27, 39)
        # float32 on both sides, rounded to 8 bits: a level apart where a value sits on a half.
        assert np.abs(y_g.astype(int) - y_c).max() <= 1
        assert np.abs(np.stack([u_g, v_g]).astype(int) - chroma[i].numpy()).max() <= 1
