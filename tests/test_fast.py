"""FastESPCN: a drop-in for the reference ESPCN, its backends and their errors."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from espcn_fast import ESPCN, FastESPCN, backends, ops

needs_extension = pytest.mark.skipif(not ops.HAVE_EXTENSION, reason=f"{ops.EXTENSION_ERROR}")


def _random_reference(scale: int) -> ESPCN:
    g = torch.Generator().manual_seed(scale)
    model = ESPCN(scale)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


@needs_extension
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_matches_reference_on_cpu(scale):
    ref = _random_reference(scale)
    fast = FastESPCN.from_reference(ref)
    x = torch.rand(2, 1, 23, 17)
    assert fast.backend_for(x) == "cpu"
    with torch.no_grad():
        torch.testing.assert_close(fast(x).double(), ref.double()(x.double()), atol=1e-5, rtol=0)


@needs_extension
def test_reference_state_dict_loads_unchanged():
    ref = ESPCN.from_pretrained(3)
    fast = FastESPCN(3)
    fast.load_state_dict(ref.state_dict())
    assert list(fast.state_dict()) == list(ref.state_dict())
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), ref(x), atol=1e-5, rtol=0)
    assert all(not p.requires_grad for p in fast.parameters())


@needs_extension
def test_from_pretrained_and_clamp():
    fast = FastESPCN.from_pretrained(2, clamp=True)
    out = fast(torch.rand(1, 1, 10, 10) * 3 - 1)
    assert out.min() >= 0 and out.max() <= 1


@needs_extension
def test_shapes_layouts_and_empty_batch():
    ref = _random_reference(3)
    fast = FastESPCN.from_reference(ref)
    cases = [
        torch.rand(1, 1, 1, 1),
        torch.rand(3, 1, 70, 5),
        torch.rand(2, 1, 8, 9)[..., ::2],
        torch.rand(2, 1, 8, 9).to(memory_format=torch.channels_last),
    ]
    ref64 = copy.deepcopy(ref).double()
    with torch.no_grad():
        for x in cases:
            # Against float64: eager float32 varies between runs by a few ulp (oneDNN's choices).
            torch.testing.assert_close(fast(x).double(), ref64(x.double()), atol=2e-5, rtol=0)
        assert fast(torch.rand(0, 1, 4, 4)).shape == (0, 1, 12, 12)


@needs_extension
def test_dtypes_on_cpu():
    ref = _random_reference(2)
    fast = FastESPCN.from_reference(ref)
    x = torch.rand(1, 1, 12, 12)
    with torch.no_grad():
        half = fast(x.half())
        assert half.dtype == torch.float16
        torch.testing.assert_close(half.float(), ref(x.half().float()), atol=2e-3, rtol=0)
        assert fast(x.bfloat16()).dtype == torch.bfloat16
        # float64 runs on the reference layers under "auto"
        assert fast.backend_for(x.double()) == "torch"
        torch.testing.assert_close(fast.double()(x.double()), ref.double()(x.double()))
    with pytest.raises(TypeError, match="backend 'cpu' takes float32/float16/bfloat16 inputs, got torch.float64"):
        FastESPCN(2, backend="cpu")(x.double())


@needs_extension
def test_half_module_runs_on_cpu_backend():
    fast = FastESPCN.from_reference(_random_reference(2)).half()
    x = torch.rand(1, 1, 6, 6).half()
    assert fast.backend_for(x) == "cpu"
    assert fast(x).dtype == torch.float16


def test_gradients_fall_back_to_reference():
    ref = _random_reference(2)
    fast = FastESPCN.from_reference(ref, backend="auto")
    x = torch.rand(1, 1, 6, 6, requires_grad=True)
    assert fast.backend_for(x) == "torch"
    fast(x).sum().backward()
    expected = torch.autograd.grad(ref(x).sum(), x)[0]
    torch.testing.assert_close(x.grad, expected)


def test_torch_backend_is_the_reference():
    ref = _random_reference(4)
    fast = FastESPCN.from_reference(ref, backend="torch")
    x = torch.rand(1, 1, 5, 7)
    with torch.no_grad():
        assert torch.equal(fast(x), ref(x))


@needs_extension
def test_torch_compile():
    ref = _random_reference(3)
    fast = FastESPCN.from_reference(ref)
    compiled = torch.compile(fast, fullgraph=True)
    x = torch.rand(1, 1, 13, 11)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), ref(x), atol=1e-5, rtol=0)


def test_backend_resolution_traces_as_one_graph():
    # FastESPCN.forward resolves its backend on every call: on CUDA through
    # queries torch.compile cannot trace (fullgraph=True failed on the GPU),
    # so it looks up what it took when it was built.
    reasons = backends.available()

    def pick(x: torch.Tensor) -> torch.Tensor:
        return x + len(backends.resolve("auto", torch.device("cuda"), reasons))

    x = torch.rand(3)
    torch.testing.assert_close(torch.compile(pick, fullgraph=True)(x), pick(x))
    with pytest.raises(RuntimeError, match="backend 'cuda' is not available|runs CUDA tensors"):
        backends.resolve("cuda", torch.device("cpu"), reasons)


def test_backend_list_is_this_process_after_unpickling():
    import copy
    import pickle

    fast = FastESPCN.from_reference(_random_reference(2))
    x = torch.rand(1, 1, 6, 5)
    fast._unavailable = {b: "stale" for b in fast._unavailable}  # as if pickled where nothing ran
    with torch.no_grad():
        expected = fast(x)  # eager: asks afresh, ignores the copy
    state = fast.__getstate__()
    del state["_unavailable"]  # a module pickled before the list existed
    old = FastESPCN.__new__(FastESPCN)
    old.__setstate__(state)
    for restored in (pickle.loads(pickle.dumps(fast)), copy.deepcopy(fast), old):
        assert restored._unavailable == backends.available()
        with torch.no_grad():
            torch.testing.assert_close(restored(x), expected, atol=0, rtol=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown backend 'fastest'"):
        FastESPCN(3, backend="fastest")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        FastESPCN(3, precision="fp8")
    fast = FastESPCN(3)
    with pytest.raises(ValueError, match="1 input channel"):
        fast(torch.rand(1, 3, 4, 4))
    with pytest.raises(TypeError, match="floating-point"):
        fast(torch.zeros(1, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="no pixels"):
        fast(torch.rand(1, 1, 0, 4))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where there is no GPU")
def test_gpu_backends_explain_why_they_are_missing(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    reasons = backends.available()
    assert reasons["torch"] is None
    assert reasons["cuda"] and reasons["triton"]
    with pytest.raises(RuntimeError, match="backend 'cuda' is not available: "):
        FastESPCN(3, backend="cuda")
    with pytest.raises(RuntimeError, match="backend 'triton' is not available: "):
        FastESPCN(3, backend="triton")


def test_import_without_extension_keeps_the_reference():
    code = (
        "import sys; sys.modules['espcn_fast._C'] = None\n"
        "import torch, espcn_fast\n"
        "from espcn_fast import ESPCN, FastESPCN, backends\n"
        "print(ESPCN(3)(torch.rand(1, 1, 4, 4)).shape)\n"
        "print(backends.available()['cpu'])\n"
        "print(FastESPCN(3).backend_for(torch.rand(1, 1, 4, 4)))\n"
        "try:\n    FastESPCN(3, backend='cpu')\nexcept RuntimeError as e:\n    print('error:', e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "torch.Size([1, 1, 12, 12])"
    assert "not built" in lines[1]
    assert lines[2] == "torch"
    assert lines[3].startswith("error: backend 'cpu' is not available: the C++ extension espcn_fast._C is not built")


@needs_extension
def test_precisions_on_cpu():
    ref = _random_reference(3)
    with pytest.raises(
        ValueError, match="backend 'cpu' computes in fp32, bf16, int8; precision 'fp16' needs backend 'cuda'"
    ):
        FastESPCN(3, backend="cpu", precision="fp16")
    # Under "auto" CPU inputs run the fp32 CPU kernels for the GPU-only precisions.
    fast = FastESPCN.from_reference(ref, precision="fp16")
    x = torch.rand(1, 1, 9, 11)
    with torch.no_grad():
        assert fast.backend_for(x) == "cpu"
        torch.testing.assert_close(fast(x), ref(x), atol=1e-5, rtol=0)


@needs_extension
def test_kernel_weights_are_cached_and_follow_changes():
    fast = FastESPCN.from_reference(_random_reference(2))
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        first = fast(x)
        cached = fast._weights(x.device, "fp32")
        assert fast._weights(x.device, "fp32")[0] is cached[0]
        last = fast._weights(x.device, "fp32", channels_last=True)  # the Triton kernels' layout, cached apart
        assert last[2].is_contiguous(memory_format=torch.channels_last) and not last[2].is_contiguous()
        assert last[3].is_contiguous() and torch.equal(last[2], cached[2])
        fast.sub_pixel[0].bias.add_(0.5)
        assert fast._weights(x.device, "fp32")[0] is not cached[0]
        torch.testing.assert_close(fast(x), first + 0.5, atol=1e-5, rtol=0)
        fast.load_state_dict(_random_reference(2).state_dict())
        torch.testing.assert_close(fast(x), first, atol=1e-5, rtol=0)
        fast.double().float()
        assert fast._kernel_weights == {}


def test_reference_layers_take_other_dtypes_than_the_parameters():
    # The reference layers compute in the wider of the two dtypes and return the input's.
    ref = _random_reference(3)
    fast = FastESPCN.from_reference(ref)
    x = torch.rand(1, 1, 7, 9, dtype=torch.float64)
    with torch.no_grad():
        assert fast.backend_for(x) == "torch"
        torch.testing.assert_close(fast(x), copy.deepcopy(ref).double()(x), atol=1e-12, rtol=0)
    half = torch.rand(1, 1, 5, 6).half().requires_grad_()  # autograd: the reference layers, in float32
    out = fast(half)
    out.float().sum().backward()
    assert out.dtype == torch.float16 and half.grad.dtype == torch.float16 and torch.isfinite(half.grad).all()


@needs_extension
def test_inference_tensors_and_untracked_weight_changes():
    x = torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():  # parameters made here keep no version counter
        fast = FastESPCN.from_reference(_random_reference(2))
        fresh = FastESPCN(2).eval()
        torch.testing.assert_close(fast(x), _random_reference(2)(x), atol=1e-5, rtol=0)
        assert fresh(x).shape == (1, 1, 12, 12)
    half = FastESPCN.from_reference(_random_reference(2)).half()  # its kernels take a converted copy
    with torch.no_grad():
        before = half(x.half())
        half.sub_pixel[0].bias.data.add_(1.0)  # .data: no version counter moves
        half.refresh_weights()
        # +1 exactly, up to float16 rounding of outputs up to ~8 (ulp 2^-8 there).
        torch.testing.assert_close(half(x.half()).float(), before.float() + 1, atol=2**-7, rtol=0)


@needs_extension
def test_pickles_hold_no_kernel_caches():
    import pickle

    fast = FastESPCN.from_reference(_random_reference(2)).half()
    size = len(pickle.dumps(fast))
    with torch.no_grad():
        fast(torch.rand(1, 1, 6, 6).half())
    assert fast._kernel_weights  # the converted copy exists here...
    assert len(pickle.dumps(fast)) == size  # ...but is not saved
    restored = pickle.loads(pickle.dumps(fast))
    assert restored._kernel_weights == {} and restored._graphs == {}
    state = fast.__getstate__()
    del state["_kernel_weights"], state["_graphs"]  # a module pickled before the caches were dropped
    old = FastESPCN.__new__(FastESPCN)
    old.__setstate__(state)
    with torch.no_grad():
        assert old(torch.rand(1, 1, 4, 4).half()).shape == (1, 1, 8, 8)


def test_other_devices_take_the_reference_layers_under_auto():
    # No kernels of ours for mps, xpu, ...: "auto" must not send them to the CPU kernels.
    everything = {b: None for b in backends.available()}
    for device in ("mps", "xpu", "meta"):
        assert backends.resolve("auto", torch.device(device), everything) == "torch"
    assert backends.resolve("auto", torch.device("cpu"), everything) == "cpu"


@needs_extension
def test_cuda_graph_bookkeeping_with_a_fake_graph(monkeypatch):
    # The capture/replay logic of cuda_graph=True, on the CPU: a fake graph records the op calls
    # made while capturing and re-runs them on replay (the CUDA run checks the real thing).
    import contextlib

    from espcn_fast import fast as fast_module

    real_op, capturing, captures = ops.espcn_forward, [], []

    class FakeGraph:
        def __init__(self):
            self.calls = []
            captures.append(self)

        def replay(self):
            for call in self.calls:
                call()

    def write(out, value):  # a replay writes memory, whatever tensor flags the buffer carries
        with torch.inference_mode():
            out.copy_(value)

    def recording_op(x, *rest):
        out = real_op(x, *rest)
        if capturing:
            capturing[-1].calls.append(lambda: write(out, real_op(x, *rest)))
        return out

    @contextlib.contextmanager
    def graph(g, **kwargs):
        capturing.append(g)
        yield
        capturing.pop()

    class Stream:
        def __init__(self, *args):
            pass

        def wait_stream(self, other):
            pass

    for name, value in [
        ("CUDAGraph", FakeGraph),
        ("graph", graph),
        ("Stream", Stream),
        ("current_stream", lambda *a: Stream()),
        ("stream", lambda s: contextlib.nullcontext()),
        ("device", lambda d: contextlib.nullcontext()),
        ("is_current_stream_capturing", lambda: False),
    ]:
        monkeypatch.setattr(torch.cuda, name, value)
    monkeypatch.setattr(fast_module.ops, "espcn_forward", recording_op)

    ref = _random_reference(2)
    fast = FastESPCN.from_reference(ref, backend="cpu", cuda_graph=True)
    x = torch.rand(1, 1, 8, 9) * 3
    with torch.inference_mode():  # captured here...
        first = fast._cuda_forward(x)
    with torch.no_grad():  # ...replayed outside it (an inference-tensor input buffer refused the copy)
        torch.testing.assert_close(fast._cuda_forward(x), first)
        fast.clamp = True  # part of the key: a new capture, clamped
        assert float(fast._cuda_forward(x).max()) <= 1.0 and len(captures) == 2
        # A tiled image's 9 tile shapes, every call in the same order: captured once, then replayed.
        tiles = [(1, 1, h, w) for h in (4, 5, 6) for w in (4, 5, 7)]
        for _ in range(3):
            for shape in tiles:
                fast._cuda_forward(torch.rand(shape))
        assert len(captures) == 2 + len(tiles)


def test_auto_prefers_our_cuda_kernels_then_triton():
    everything = {b: None for b in backends.available()}
    assert backends.resolve("auto", torch.device("cuda"), everything) == "cuda"
    assert backends.resolve("auto", torch.device("cuda"), {**everything, "cuda": "not built"}) == "triton"


@needs_extension
def test_reference_path_dtype_and_clamp_and_a_swapped_parameter():
    ref = _random_reference(2)
    with torch.no_grad():
        # float16 input, float32 module, torch backend: computed in float32, returned in float16.
        torch_path = FastESPCN.from_reference(ref, backend="torch")
        x = torch.rand(1, 1, 6, 7)
        assert torch.equal(torch_path(x.half()), ref(x.half().float()).half())
        # clamp on the reference path too (auto sends float64 there).
        clamped = FastESPCN.from_reference(ref, clamp=True)
        out = clamped(torch.rand(1, 1, 6, 7, dtype=torch.float64) * 4 - 2)
        assert out.dtype == torch.float64 and 0 <= float(out.min()) and float(out.max()) <= 1
        # A parameter replaced by a new tensor (a new storage, its own version counter): the kernels follow.
        fast = FastESPCN.from_reference(ref).half()
        before = fast(x.half())
        fast.sub_pixel[0].bias = torch.nn.Parameter(fast.sub_pixel[0].bias + 1, requires_grad=False)
        torch.testing.assert_close(fast(x.half()).float(), before.float() + 1, atol=2**-7, rtol=0)
