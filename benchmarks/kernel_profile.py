"""Where a frame's time goes: each kernel a backend launches, timed by the profiler.

    python benchmarks/kernel_profile.py                       # GPU: our CUDA and Triton rows, eager
    python benchmarks/kernel_profile.py --backends "espcn_fast:triton" --precisions tf32
    python benchmarks/kernel_profile.py --device cpu          # CPU: operators instead of kernels

run.py says how long a frame takes; this says which launches that time is
made of (the Triton backend's three layer kernels, the casts around a
half-precision model, cuDNN's convolutions), so that the next change goes
where the time is. The rows are run.py's candidates, on the shipped weights
and a random 1080p-output frame; each is warmed up, then `--calls` calls are
profiled and every kernel's device time is averaged per call.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from espcn_fast import ESPCN
from espcn_fast.benchmark import peers
from espcn_fast.benchmark.config import FRAME, candidates

GPU_ROWS = ("espcn_fast:cuda", "espcn_fast:triton", "eager", "eager channels_last")
CPU_ROWS = ("espcn_fast:cpu", "eager")


def kernel_times(fn, x: torch.Tensor, calls: int) -> list[dict]:
    """Each kernel (operator on the CPU) under ``fn(x)``: its launches and microseconds per call of fn."""
    cuda = x.is_cuda
    with torch.inference_mode():
        for _ in range(3):
            fn(x)
        if cuda:
            torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]) as prof:
            for _ in range(calls):
                fn(x)
            if cuda:
                torch.cuda.synchronize()
    found = []
    for event in prof.key_averages():
        # Device time on a GPU (kernels and copies), self time of operators on the CPU.
        us = (getattr(event, "self_device_time_total", 0) or 0) if cuda else event.self_cpu_time_total
        if us > 0 and (not cuda or event.count > 0):
            found.append({"kernel": event.key, "launches_per_call": event.count / calls, "us_per_call": us / calls})
    found.sort(key=lambda k: -k["us_per_call"])
    return found


def triton_choices() -> dict[str, str]:
    """The configuration Triton's autotuner chose for each layer shape it tuned so far (empty before any)."""
    kernels = sys.modules.get("espcn_fast.triton_backend.kernels")
    tuned = getattr(kernels, "TUNED", {})
    return {f"{family} {key}": str(config) for family, tuner in tuned.items() for key, config in tuner.cache.items()}


def short(name: str, width: int = 70) -> str:
    return name if len(name) <= width else name[: width - 3] + "..."


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present")
    p.add_argument("--scale", type=int, default=3, choices=(2, 3, 4))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--backends", nargs="+", help="run.py row names (default: ours and eager)")
    p.add_argument("--precisions", nargs="+", help="only these precisions")
    p.add_argument("--calls", type=int, default=20, help="profiled calls per row")
    p.add_argument("--top", type=int, default=6, help="kernels shown per row")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU here")
    if args.calls < 1 or args.batch < 1:
        raise SystemExit("--calls and --batch must be at least 1")
    names = args.backends or (GPU_ROWS if device.type == "cuda" else CPU_ROWS)
    model = ESPCN.from_pretrained(args.scale).to(device)
    h, w = FRAME[0] // args.scale, FRAME[1] // args.scale
    x = torch.rand(args.batch, 1, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    rows = []
    print(
        f"x{args.scale}, batch {args.batch}, {h}x{w} -> {h * args.scale}x{w * args.scale}, "
        f"{args.calls} calls profiled per row, times per call (a call = the whole batch)"
    )
    print("| backend | precision | kernel | launches | us | share |")
    print("|---|---|---|---:|---:|---:|")
    for cand in candidates(device, torch.get_num_threads()):
        if cand.name not in names or (args.precisions and cand.precision not in args.precisions):
            continue
        try:
            fn, _ = cand.make(model, x)
        except peers.Skip as why:
            print(f"| {cand.name} | {cand.precision} | skipped: {why} | | | |")
            rows.append({"backend": cand.name, "precision": cand.precision, "skipped": str(why)})
            continue
        kernels = kernel_times(fn, x, args.calls)
        total = sum(k["us_per_call"] for k in kernels)
        for k in kernels[: args.top]:
            print(
                f"| {cand.name} | {cand.precision} | `{short(k['kernel'])}` | {k['launches_per_call']:g} | "
                f"{k['us_per_call']:.1f} | {k['us_per_call'] / total:.0%} |"
            )
        print(
            f"| {cand.name} | {cand.precision} | **all {len(kernels)}** | "
            f"{sum(k['launches_per_call'] for k in kernels):g} | **{total:.1f}** | |",
            flush=True,
        )
        rows.append({"backend": cand.name, "precision": cand.precision, "us_per_call": total, "kernels": kernels})
    choices = triton_choices()
    for key, config in choices.items():  # which of kernels.CONFIGS won, per layer shape
        print(f"triton autotune {key}: {config}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "device": str(device),
                    "scale": args.scale,
                    "batch": args.batch,
                    "input_hw": [h, w],
                    "rows": rows,
                    "triton_autotune": choices,
                },
                indent=1,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
