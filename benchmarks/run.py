"""1080p frame times of every espcn_fast backend next to what users would run instead.

    python benchmarks/run.py                      # the whole suite on this machine's device
    python benchmarks/run.py --quick              # a smoke run (CI)
    python benchmarks/run.py --device cpu --scales 3 --batch 1 --backends espcn_fast:cpu eager

Each row is checked against the reference model on the benchmark input
before it is timed; a wrong row is flagged and not timed (and a wrong row of
espcn_fast's makes the exit status 1). Prints a table and writes a JSON file
with every number and the machine (--json, rewritten after each row), and a
bar chart of frames per second (--plot).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.malloc_env import PROBE_ENV, reexec_with_malloc_env  # noqa: E402

if __name__ == "__main__" and not os.environ.get(PROBE_ENV):
    reexec_with_malloc_env()

import torch  # noqa: E402

from benchmarks import peers  # noqa: E402
from benchmarks.machine import describe  # noqa: E402
from benchmarks.memory import cpu_peak_mib_in_child, cuda_peak_mib, rss_peak_mib  # noqa: E402
from benchmarks.timing import time_fn  # noqa: E402
from espcn_fast import ESPCN, FastESPCN, backends, ops  # noqa: E402

# Output frame (1080p); LR input = this / scale.
FRAME = (1080, 1920)
QUICK_FRAME = (270, 480)
TOLERANCE = {"fp32": 1e-4, "tf32": 2e-2, "fp16": 2e-2, "bf16": 5e-2}


@dataclass
class Candidate:
    name: str  # "espcn_fast:cpu", "eager", ...
    precision: str
    make: Callable[[ESPCN, torch.Tensor], tuple[peers.Runner, float]]
    ours: bool = False
    slow_setup: bool = False  # compiles: left out of --quick unless asked for


@dataclass
class Row:
    name: str
    precision: str
    scale: int
    batch: int
    input_hw: tuple[int, int]
    status: str = "ok"  # ok | skipped | wrong
    reason: str = ""
    ms_per_frame: float | None = None
    ms_spread: float | None = None
    fps: float | None = None
    speedup_vs_eager: float | None = None
    gflops: float | None = None
    peak_mib: float | None = None
    setup_s: float | None = None
    max_abs_error: float | None = None
    repeats: int | None = None
    extra: dict = field(default_factory=dict)


def macs_per_lr_pixel(model: ESPCN) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def need_backend(backend: str) -> None:
    """Skip a row of ours when ``backend`` cannot run here (no kernels built, no GPU, no triton)."""
    reason = backends.unavailable_reason(backend)
    if reason is not None:
        raise peers.Skip(reason)


def ours_cpu(model: ESPCN, x: torch.Tensor) -> tuple[peers.Runner, float]:
    """FastESPCN on the fused CPU op."""
    need_backend("cpu")
    fast = FastESPCN.from_reference(model, backend="cpu")
    return (lambda inp: fast(inp)), 0.0


def ours_cpu_layers(model: ESPCN, x: torch.Tensor) -> tuple[peers.Runner, float]:
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
    if device.type == "cpu":
        return [
            Candidate("espcn_fast:cpu", "fp32", ours_cpu, ours=True),
            Candidate("espcn_fast:cpu-layers", "fp32", ours_cpu_layers, ours=True),
            Candidate("eager", "fp32", peers.eager),
            Candidate("eager channels_last", "fp32", lambda m, x: peers.eager(m, x, channels_last=True)),
            Candidate("torch.compile", "fp32", peers.compiled, slow_setup=True),
            Candidate("torch.compile freezing", "fp32", lambda m, x: peers.compiled(m, x, freezing=True),
                      slow_setup=True),
            Candidate("onnxruntime", "fp32", lambda m, x: peers.onnxruntime(m, x, threads)),
            Candidate("opencv dnn", "fp32", lambda m, x: peers.opencv_dnn(m, x, threads)),
        ]
    gpu = [Candidate("espcn_fast:cuda", p, ours_gpu("cuda", p), ours=True) for p in ops.PRECISIONS]
    gpu += [Candidate("espcn_fast:triton", p, ours_gpu("triton", p), ours=True) for p in ops.PRECISIONS]
    gpu += [Candidate("espcn_fast:cuda-layers", "fp32", ours_cpu_layers, ours=True)]
    for p in ops.PRECISIONS:
        gpu.append(Candidate("eager", p, lambda m, x, p=p: peers.eager_cuda(m, x, p)))
    gpu.append(Candidate("eager channels_last", "fp16", lambda m, x: peers.eager_cuda(m, x, "fp16", channels_last=True)))
    gpu.append(Candidate("eager autocast", "fp16", peers.autocast_fp16))
    gpu.append(Candidate("torch.compile", "tf32", lambda m, x: peers.compiled_cuda(m, x, "tf32", mode=None),
                         slow_setup=True))
    for p in ops.PRECISIONS:
        gpu.append(Candidate("torch.compile max-autotune", p, lambda m, x, p=p: peers.compiled_cuda(m, x, p),
                             slow_setup=True))
    gpu.append(Candidate("onnxruntime cuda", "fp32",
                         lambda m, x: peers.onnxruntime(m, x, threads, provider="CUDAExecutionProvider")))
    gpu.append(Candidate("opencv dnn", "fp32", lambda m, x: peers.opencv_dnn(m, x, threads)))
    return gpu


def reference_output(model: ESPCN, x: torch.Tensor) -> torch.Tensor:
    """The reference model in float64, the yardstick of every row.

    (Not the model in float32: on a GPU cuDNN runs float32 convolutions in
    TF32 by default, so that yardstick was itself off by 5e-4.)
    """
    with torch.inference_mode():
        return copy.deepcopy(model).double()(x.double()).float()


def run_row(cand: Candidate, model: ESPCN, inputs: list[torch.Tensor], expected: torch.Tensor,
            scale: int, budget: float, min_repeats: int) -> Row:
    x = inputs[0]
    row = Row(cand.name, cand.precision, scale, x.shape[0], (x.shape[2], x.shape[3]))
    try:
        fn, setup = cand.make(model, x)
    except peers.Skip as exc:
        row.status, row.reason = "skipped", str(exc)
        return row
    row.setup_s = round(setup, 3)
    with torch.inference_mode():
        out = fn(x).float()
    if out.shape != expected.shape:
        row.status, row.reason = "wrong", f"output shape {tuple(out.shape)}, expected {tuple(expected.shape)}"
        return row
    row.max_abs_error = (out - expected).abs().max().item()
    if not row.max_abs_error <= TOLERANCE[cand.precision]:
        row.status, row.reason = "wrong", f"max error {row.max_abs_error:.3g} > {TOLERANCE[cand.precision]}"
        return row
    timing = time_fn(fn, inputs, x.device, budget_s=budget, min_repeats=min_repeats)
    if x.device.type == "cuda":
        row.peak_mib = round(cuda_peak_mib(fn, x), 1)
    batch = x.shape[0]
    row.ms_per_frame = timing.median_ms / batch
    row.ms_spread = timing.spread_ms / batch
    row.fps = 1e3 / row.ms_per_frame
    row.repeats = timing.repeats
    flops = 2 * macs_per_lr_pixel(model) * x.shape[2] * x.shape[3]
    row.gflops = flops / (row.ms_per_frame * 1e-3) / 1e9
    return row


def format_table(rows: list[Row]) -> str:
    floors = any("x_floor" in r.extra for r in rows)
    head = "| scale | batch | backend | precision | ms/frame | spread | fps | vs eager | GFLOP/s | peak MiB | setup s |"
    lines = [head + (" x floor |" if floors else ""), "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if floors else "")]
    for r in rows:
        if r.status != "ok":
            lines.append(f"| x{r.scale} | {r.batch} | {r.name} | {r.precision} | {r.status}: {r.reason} | | | | | | |")
            continue
        mark = "**" if r.name.startswith("espcn_fast") else ""
        lines.append(
            f"| x{r.scale} | {r.batch} | {mark}{r.name}{mark} | {r.precision} | {mark}{r.ms_per_frame:.2f}{mark} | "
            f"{r.ms_spread:.2f} | {r.fps:.1f} | {r.speedup_vs_eager:.2f}x | {r.gflops:.0f} | "
            f"{'' if r.peak_mib is None else f'{r.peak_mib:.0f}'} | {r.setup_s or 0:.1f} |"
            + (f" {r.extra.get('x_floor', '')} |" if floors else "")
        )
    return "\n".join(lines)


def plot(rows: list[Row], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r.status == "ok"]
    several = len({r.precision for r in done}) > 1  # on a GPU: name each row's precision
    labels = [f"x{r.scale} b{r.batch} {r.name}" + (f" {r.precision}" if several else "") for r in done]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(done) + 1.2))
    colours = ["tab:red" if r.name.startswith("espcn_fast") else "tab:grey" for r in done]
    ax.barh(range(len(done)), [r.fps for r in done], color=colours)
    ax.set_yticks(range(len(done)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("1080p frames per second (higher is better)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def memory_probe(args: argparse.Namespace, device: torch.device) -> int:
    """Child mode: set up one row, print its peak memory during one call as JSON."""
    scale, batch = args.scales[0], args.batch[0]
    frame = QUICK_FRAME if args.quick else FRAME
    cand = next(c for c in candidates(device, torch.get_num_threads()) if c.name == args.backends[0])
    model = ESPCN.from_pretrained(scale).to(device)
    x = torch.rand(batch, 1, frame[0] // scale, frame[1] // scale, device=device)
    fn, _ = cand.make(model, x)
    with torch.inference_mode():
        peak = rss_peak_mib(fn, x)
    print(json.dumps({"peak_mib": None if peak is None else round(peak, 1)}))
    return 0


def write_json(path: Path, result: dict) -> None:
    """Write ``result`` to ``path`` whole or not at all (temp file, then rename): a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present")
    p.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--backends", nargs="+", help="only these rows (names as in the table)")
    p.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    p.add_argument("--quick", action="store_true", help="small frames, short timings, no compiles")
    p.add_argument("--budget", type=float, help="seconds of timing per row (default 3, quick 0.3)")
    p.add_argument("--json", type=Path, default=Path("benchmarks/results/latest.json"))
    p.add_argument("--plot", type=Path, help="bar chart PNG (default: beside the JSON)")
    p.add_argument("--no-memory", action="store_true", help="skip the CPU peak-memory runs (a child process per row)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU here")
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    budget = args.budget if args.budget is not None else (0.3 if args.quick else 3.0)
    min_repeats = 3 if args.quick else 10
    frame = QUICK_FRAME if args.quick else FRAME
    batches = [1] if args.quick and args.batch == [1, 8] else args.batch
    scales = [3] if args.quick and args.scales == [2, 3, 4] else args.scales
    if os.environ.get(PROBE_ENV):
        return memory_probe(args, device)
    machine = describe(device, threads)
    print(f"device: {machine.get('gpu') or machine['cpu']}, {threads} thread(s), torch {torch.__version__}, "
          f"CPU kernels: {machine['cpu_isa']}", flush=True)
    known = dict.fromkeys(c.name for c in candidates(device, threads))
    unknown = [b for b in args.backends or [] if b not in known]
    if unknown:  # a typo would otherwise drop its rows without a word
        raise SystemExit(f"--backends: unknown on {device.type}: {', '.join(map(repr, unknown))}; "
                         f"the rows: {', '.join(map(repr, known))}")
    cands = [c for c in candidates(device, threads)
             if (args.backends is None and not (args.quick and c.slow_setup))
             or (args.backends is not None and c.name in args.backends)]
    rows: list[Row] = []
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine,
        "device": str(device),
        "frame": list(frame),
        "available_backends": backends.available(),
        "rows": [],
    }
    g = torch.Generator().manual_seed(0)
    for scale in scales:
        model = ESPCN.from_pretrained(scale).to(device)
        h, w = frame[0] // scale, frame[1] // scale
        for batch in batches:
            inputs = [torch.rand(batch, 1, h, w, generator=g).to(device) for _ in range(3)]
            expected = reference_output(model, inputs[0])
            eager_ms: dict[str, float] = {}
            for cand in cands:
                row = run_row(cand, model, inputs, expected, scale, budget, min_repeats)
                if row.name == "eager" and row.ms_per_frame:
                    eager_ms[row.precision] = row.ms_per_frame
                if row.ms_per_frame and device.type == "cuda":
                    flops = 2 * macs_per_lr_pixel(model) * h * w
                    io_bytes = 4 * (h * w + h * w * scale * scale)
                    best = floor_ms(machine.get("gpu"), row.precision, flops, io_bytes)
                    if best is not None:
                        row.extra["floor_ms"] = round(best, 4)
                        row.extra["x_floor"] = round(row.ms_per_frame / best, 2)
                rows.append(row)
                status = f"{row.ms_per_frame:.2f} ms/frame" if row.status == "ok" else f"{row.status}: {row.reason}"
                print(f"  x{scale} batch {batch} {h}x{w}: {cand.name} {cand.precision}: {status}", flush=True)
                write_json(args.json, {**result, "rows": [asdict(r) for r in rows]})  # a run cut short keeps its rows
            for row in rows:
                # Against eager in the same precision (eager fp32 when there is none).
                base = eager_ms.get(row.precision, eager_ms.get("fp32"))
                if row.scale == scale and row.batch == batch and row.ms_per_frame and base:
                    row.speedup_vs_eager = base / row.ms_per_frame
    for row in rows:
        if row.status == "ok" and row.speedup_vs_eager is None:
            row.speedup_vs_eager = float("nan")
    if device.type == "cpu" and not args.no_memory:
        print("peak memory (a child process per row)...", flush=True)
        for row in rows:
            if row.status == "ok":
                row.peak_mib = cpu_peak_mib_in_child(row.name, row.scale, row.batch, args.quick, threads)
    table = format_table(rows)
    print()
    print(table)
    write_json(args.json, {**result, "rows": [asdict(r) for r in rows]})
    plot_path = args.plot or args.json.with_suffix(".png")
    plot(rows, plot_path, f"ESPCN, 1080p out: {machine.get('gpu') or machine['cpu']}, {threads} thread(s)")
    print(f"\nwrote {args.json} and {plot_path}")
    wrong = [f"x{r.scale} b{r.batch} {r.name} {r.precision}" for r in rows
             if r.status == "wrong" and any(c.ours and c.name == r.name for c in cands)]
    if wrong:  # a check that only prints "wrong" in a table would pass
        print(f"\nWRONG output from espcn_fast: {'; '.join(wrong)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
