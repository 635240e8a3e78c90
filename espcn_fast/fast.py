"""``FastESPCN``: the reference ESPCN's drop-in for inference, on the fastest backend."""

from __future__ import annotations

import torch

from . import backends, ops
from .model import ESPCN
from .tiling import check_tile, run_tiled
from .validation import check_image_batch

PRECISIONS = ops.PRECISIONS
# The images FastESPCN takes on every device (the kernels read ops.IMAGE_DTYPES; others are converted).
_INPUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# cuda_graph=True keeps the graphs of this many input shapes, the least recently used dropped first
# (a tiled image has up to 9 tile shapes, visited in the same order each call: fewer would recapture all).
MAX_CUDA_GRAPHS = 16


class FastESPCN(ESPCN):
    """ESPCN for inference on fused kernels; same parameters and state dict as :class:`ESPCN`.

    Args:
        scale: upscaling factor.
        backend: ``"auto"`` (the fastest available for the input's device, see
            :mod:`espcn_fast.backends`), ``"cpu"``, ``"cuda"``, ``"triton"`` or
            ``"torch"`` (the reference layers).
        precision: the arithmetic. ``"fp32"``: float32 everywhere. CUDA and
            Triton: ``"tf32"``, ``"fp16"``, ``"bf16"`` on the tensor cores with
            float32 accumulation. CPU: ``"bf16"`` (AVX512-BF16) and ``"int8"``
            (AVX512-VNNI or AVX-VNNI; CPU only), as :mod:`espcn_fast.reduced_precision`
            defines them; int8 is meant for the int8 weights
            (``from_pretrained(scale, precision="int8")``). ``"tf32"`` and
            ``"fp16"`` run CPU inputs in fp32 under ``"auto"`` and are an error
            with ``backend="cpu"``; a CPU without the instruction set a
            precision needs is an error naming it.
        clamp: clamp the output to [0, 1] inside the kernel.
        tile: run inputs larger than ``tile`` x ``tile`` LR pixels in tiles
            with a 4-pixel halo (:mod:`espcn_fast.tiling`): identical output,
            intermediates bounded by the tile (the output is still whole).
        cuda_graph: on the CUDA backend, capture a CUDA graph per input shape,
            dtype and device on its first call and replay it afterwards (the
            input is copied into the graph's buffer and the output cloned out
            of it): less host overhead per frame for a video of fixed size.
            The graphs of the last ``MAX_CUDA_GRAPHS`` (16) shapes are kept.

    Parameters are created with ``requires_grad=False``. When autograd is
    wanted (grad mode on and the input or a parameter requires grad), the
    forward runs the reference layers instead, so gradients are correct.
    The CPU backend computes in float32; float16/bfloat16 inputs are upcast
    and the result cast back. The CUDA backend reads and writes float32 and
    float16 images (bfloat16 ones are converted). float64 inputs run on the
    reference layers in float64 under ``"auto"`` (an error with
    ``"cpu"``/``"cuda"``/``"triton"``); the reference layers always compute in
    the wider of the input's and the parameters' dtypes and return the input's.
    The weights are converted to the kernels' dtype once per device and
    precision, and again only when a parameter changes.
    """

    def __init__(
        self,
        scale: int,
        backend: str = "auto",
        precision: str = "fp32",
        in_channels: int = 1,
        out_channels: int = 1,
        channels: int = 64,
        clamp: bool = False,
        cuda_graph: bool = False,
        tile: int | None = None,
    ) -> None:
        super().__init__(scale, in_channels, out_channels, channels)
        if backend not in backends.BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(backends.BACKENDS)}")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        if backend == "cpu" and precision not in ops.CPU_PRECISIONS:
            raise ValueError(
                f"backend 'cpu' computes in {', '.join(ops.CPU_PRECISIONS)}; "
                f"precision {precision!r} needs backend 'cuda' or 'auto'"
            )
        if backend in ("cuda", "triton") and precision in ops.CPU_ONLY_PRECISIONS:
            raise ValueError(f"precision {precision!r} runs on the CPU only; use backend 'cpu' or 'auto'")
        # What can run here. forward asks afresh, except under torch.compile,
        # which cannot trace those queries and looks up this copy instead
        # (taken when the module is built or unpickled).
        self._unavailable = backends.available()
        if backend != "auto" and self._unavailable[backend] is not None:
            raise RuntimeError(f"backend {backend!r} is not available: {self._unavailable[backend]}")
        self.backend = backend
        self.precision = precision
        self.clamp = clamp
        self.cuda_graph = cuda_graph
        if tile is not None:
            check_tile(tile)
        self.tile = tile
        self.requires_grad_(False)
        self._kernel_weights: dict[tuple, tuple[tuple[int, ...], list[torch.Tensor]]] = {}
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_pretrained(cls, scale: int, device: str | torch.device = "cpu", **kwargs) -> FastESPCN:  # type: ignore[override]
        """The shipped weights (see :meth:`ESPCN.from_pretrained`) on the fast path; with
        ``precision="int8"`` the weights fine-tuned for int8."""
        reference = ESPCN.from_pretrained(scale, precision=kwargs.get("precision", "fp32"))
        return cls.from_reference(reference, **kwargs).to(device)

    @classmethod
    def from_reference(cls, model: ESPCN, **kwargs) -> FastESPCN:
        """A FastESPCN with the weights, scale and shape of a reference ``model``."""
        fast = cls(
            model.scale,
            in_channels=model.in_channels,
            out_channels=model.out_channels,
            channels=model.feature_maps[0].out_channels,
            **kwargs,
        )
        fast.load_state_dict(model.state_dict())
        first = next(model.parameters())
        return fast.to(first.device, first.dtype).eval()

    def extra_repr(self) -> str:
        return (
            f"scale={self.scale}, backend={self.backend!r}, precision={self.precision!r}, clamp={self.clamp}"
            + (", cuda_graph=True" if self.cuda_graph else "")
            + (f", tile={self.tile}" if self.tile else "")
        )

    def backend_for(self, x: torch.Tensor) -> str:
        """The backend that :meth:`forward` uses for ``x``."""
        wants_grad = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters()))
        if wants_grad:
            return "torch"
        if self.backend == "auto" and x.dtype not in _INPUT_DTYPES:
            return "torch"
        return backends.resolve(self.backend, x.device, self._unavailable if torch.compiler.is_compiling() else None)

    def _weights(self, device: torch.device, precision: str, channels_last: bool = False) -> list[torch.Tensor]:
        """w1, b1, w2, b2, w3, b3 as the kernels take them (weights in the precision's dtype, biases float32).

        ``channels_last``: the weights in that layout (what the Triton kernels
        read fastest). Cached per device, precision and layout; a parameter
        changed in place (its version counter moves) or a moved module
        rebuilds the cache. Writes through ``.data`` move no version counter:
        call :meth:`refresh_weights` after them.
        """
        convs = (self.feature_maps[0], self.feature_maps[2], self.sub_pixel[0])
        params = [t for c in convs for t in (c.weight, c.bias)]
        wdtype = ops.WEIGHT_DTYPES[precision]

        layout = torch.channels_last if channels_last else torch.contiguous_format

        def convert() -> list[torch.Tensor]:
            return [
                t.detach()
                .to(device, wdtype if i % 2 == 0 else torch.float32)
                .contiguous(memory_format=layout if i % 2 == 0 else torch.contiguous_format)
                for i, t in enumerate(params)
            ]

        if torch.compiler.is_compiling():
            return convert()
        key = (device, precision, channels_last)
        # Inference tensors keep no version counter (they change in place only inside inference_mode).
        versions = tuple(-1 if p.is_inference() else p._version for p in params) + tuple(p.data_ptr() for p in params)
        cached = self._kernel_weights.get(key)
        if cached is None or cached[0] != versions:
            cached = (versions, convert())
            self._kernel_weights[key] = cached
        return cached[1]

    def refresh_weights(self) -> None:
        """Drops the kernels' converted weights and the CUDA graphs, to be rebuilt on the next call:
        needed only after a parameter was changed where PyTorch does not track it: through
        ``.data``, or an inference-mode parameter changed inside ``torch.inference_mode``."""
        self._kernel_weights = {}
        self._graphs = {}

    def __getstate__(self) -> dict:  # pickled or deep-copied: the caches are this process's, rebuilt on demand
        state = super().__getstate__()
        return {**state, "_kernel_weights": {}, "_graphs": {}}

    def __setstate__(self, state: dict) -> None:  # unpickled (or deep-copied): this process's backends
        super().__setstate__({"_kernel_weights": {}, "_graphs": {}, **state})
        self._unavailable = backends.available()

    def _apply(self, fn, recurse=True):  # .to(), .cuda(), .half(): the cached kernel weights are stale
        self.refresh_weights()
        return super()._apply(fn, recurse)

    def _cuda_forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self._weights(x.device, self.precision)
        if not self.cuda_graph or torch.compiler.is_compiling() or torch.cuda.is_current_stream_capturing():
            return ops.espcn_forward(x, *weights, self.scale, self.clamp, self.precision)
        # One graph per shape/dtype/device and set of converted weights (new
        # weights after a parameter change mean a new capture).
        key = (tuple(x.shape), x.dtype, x.device, self.precision, tuple(w.data_ptr() for w in weights), self.clamp)
        entry = self._graphs.pop(key, None)
        if entry is None:
            with torch.inference_mode(False):  # a normal tensor: later calls outside inference_mode copy into it
                static_x = x.clone()
            stream = torch.cuda.Stream(x.device)
            stream.wait_stream(torch.cuda.current_stream(x.device))
            with torch.cuda.stream(stream):  # warm-up outside the capture, as torch.cuda.graphs asks
                ops.espcn_forward(static_x, *weights, self.scale, self.clamp, self.precision)
            torch.cuda.current_stream(x.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            # On x's device and the warm-up's stream: by default the capture stream is one made on
            # whichever device was current at the first capture of the process.
            with torch.cuda.device(x.device), torch.cuda.graph(graph, stream=stream):
                static_out = ops.espcn_forward(static_x, *weights, self.scale, self.clamp, self.precision)
            self._graphs = {k: v for k, v in self._graphs.items() if k[4] == key[4]}  # drop stale weights' graphs
            entry = (graph, static_x, static_out)
        self._graphs[key] = entry  # the most recently used last
        while len(self._graphs) > MAX_CUDA_GRAPHS:  # each holds its input, output and memory pool
            self._graphs.pop(next(iter(self._graphs)))
        graph, static_x, static_out = entry
        static_x.copy_(x)
        graph.replay()
        return static_out.clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` LR -> ``(N, C, H*r, W*r)`` HR, on the backend :meth:`backend_for` picks."""
        check_image_batch(x, self.in_channels, "FastESPCN")
        if self.tile is not None and max(x.shape[-2:]) > self.tile:
            return run_tiled(self._forward_whole, x, self.scale, self.tile)
        return self._forward_whole(x)

    def _reference_layers(self, x: torch.Tensor) -> torch.Tensor:
        """The reference layers in the wider of the input's and the parameters' dtypes (a float64
        image on a float32 module: float64; a float16 one: float32), the result in the input's."""
        dtype = torch.promote_types(x.dtype, self.sub_pixel[0].weight.dtype)

        def run(layers: torch.nn.Module, h: torch.Tensor) -> torch.Tensor:
            if all(p.dtype == dtype for p in layers.parameters()):
                return layers(h)
            # Cast copies of the parameters (differentiable: gradients reach the originals).
            return torch.func.functional_call(layers, {n: p.to(dtype) for n, p in layers.named_parameters()}, (h,))

        return run(self.sub_pixel, run(self.feature_maps, x.to(dtype))).to(x.dtype)

    def _forward_whole(self, x: torch.Tensor) -> torch.Tensor:
        backend = self.backend_for(x)
        if backend == "torch":
            out = self._reference_layers(x)
            return out.clamp(0, 1) if self.clamp else out
        if x.dtype not in _INPUT_DTYPES:
            raise TypeError(
                f"backend {backend!r} takes float32/float16/bfloat16 inputs, got {x.dtype}; "
                "use backend='torch' for float64"
            )
        if backend == "cpu":  # reads and writes float32
            precision = self.precision if self.precision in ops.CPU_PRECISIONS else "fp32"
            weights = self._weights(x.device, precision)
            ranges = self.a1_ranges if precision == "int8" else None
            if ranges is not None:
                ranges = ranges.to(x.device, torch.float32)
            out = ops.espcn_forward(x.float(), *weights, self.scale, self.clamp, precision, ranges)
            return out.to(x.dtype)
        if self.precision in ops.CPU_ONLY_PRECISIONS:
            raise RuntimeError(f"FastESPCN: precision {self.precision!r} runs on CPU tensors only, got {x.device}")
        if backend in ("cuda", "triton"):
            xin = (x if x.dtype in ops.IMAGE_DTYPES else x.float()).contiguous()
            if backend == "cuda":
                return self._cuda_forward(xin).to(x.dtype)
            from .triton_backend import ops as _  # noqa: F401  (registers espcn_fast_triton::*)

            out = torch.ops.espcn_fast_triton.espcn_forward(
                xin,
                *self._weights(x.device, self.precision, channels_last=True),
                self.scale,
                self.clamp,
                self.precision,
            )
            return out.to(x.dtype)
        raise RuntimeError(f"backend {backend!r} is not implemented yet")  # pragma: no cover
