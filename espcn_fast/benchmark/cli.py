"""``python benchmarks/run.py``: the grid of rows on this machine, then the table, the JSON and the chart.

    python benchmarks/run.py                      # the whole suite on this machine's device
    python benchmarks/run.py --quick              # a smoke run: small frames, short timings, no compiles
    python benchmarks/run.py --device cpu --scales 3 --batch 1 --backends espcn_fast:cpu eager

Each row is checked against the float64 reference model on the benchmark input
before it is timed; a wrong row is flagged and not timed (and a wrong row of
espcn_fast's makes the exit status 1); a row that would not fit the machine's
memory is skipped with the reason. CPU rows at x3 are also scored on Set5 (its
standard x3 LR inputs, the protocol of espcn_fast.evaluate): the Set5 x3 dB
column. The table groups each scale and batch's rows by precision (fp32, then
tf32, fp16, bf16, int8). Prints a table and the run's length, and
writes a JSON file with every number and the machine (--json, rewritten after
each row) and a bar chart of frames per second (--plot).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import torch

from .. import backends
from ..model import ESPCN
from .config import FRAME, QUICK_FRAME, candidates, macs_per_lr_pixel
from .grid import PSNR_SCALE, Row, reference_output, run_row
from .machine import describe
from .malloc_env import PROBE_ENV
from .memory import cpu_peak_mib_in_child, rss_peak_mib
from .report import format_table, frame_label, grouped, plot, write_json
from .speedups import against_eager, against_floor

# Under outputs/ (git-ignored): a run does not change the checkout. Results worth keeping are
# copied to benchmarks/results/ by hand, with their RESULTS.md entry.
DEFAULT_JSON = Path("outputs/benchmarks/latest.json")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="benchmarks/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present")
    p.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--backends", nargs="+", help="only these rows (names as in the table)")
    p.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    p.add_argument("--quick", action="store_true", help="small frames, short timings, no compiles")
    p.add_argument("--budget", type=float, help="seconds of timing per row (default 2, quick 0.3)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    p.add_argument("--plot", type=Path, help="bar chart PNG (default: beside the JSON)")
    p.add_argument("--no-memory", action="store_true", help="skip the CPU peak-memory runs (a child process per row)")
    return p.parse_args(argv)


def memory_probe(args: argparse.Namespace, device: torch.device) -> int:
    """Child mode: set up one row, print its peak memory during one call as JSON."""
    scale, batch = args.scales[0], args.batch[0]
    frame = QUICK_FRAME if args.quick else FRAME
    precision = os.environ[PROBE_ENV]
    cand = next(
        c
        for c in candidates(device, torch.get_num_threads())
        if c.name == args.backends[0] and c.precision == precision
    )
    model = ESPCN.from_pretrained(scale).to(device)
    x = torch.rand(batch, 1, frame[0] // scale, frame[1] // scale, device=device)
    fn, _ = cand.make(model, x)
    with torch.inference_mode():
        peak = rss_peak_mib(fn, x)
    print(json.dumps({"peak_mib": None if peak is None else round(peak, 1)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the grid; exit status 1 when a row of ours is wrong."""
    started = time.perf_counter()
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU here")
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    budget = args.budget if args.budget is not None else (0.3 if args.quick else 2.0)
    min_repeats = 3 if args.quick else 10
    frame = QUICK_FRAME if args.quick else FRAME
    batches = [1] if args.quick and args.batch == [1, 8] else args.batch
    scales = [3] if args.quick and args.scales == [2, 3, 4] else args.scales
    if os.environ.get(PROBE_ENV):
        return memory_probe(args, device)
    machine = describe(device, threads)
    print(
        f"device: {machine.get('gpu') or machine['cpu']}, {threads} thread(s), torch {torch.__version__}, "
        f"CPU kernels: {machine['cpu_isa']}",
        flush=True,
    )
    known = dict.fromkeys(c.name for c in candidates(device, threads))
    unknown = [b for b in args.backends or [] if b not in known]
    if unknown:  # a typo would otherwise drop its rows without a word
        raise SystemExit(
            f"--backends: unknown on {device.type}: {', '.join(map(repr, unknown))}; "
            f"the rows: {', '.join(map(repr, known))}"
        )
    cands = [
        c
        for c in candidates(device, threads)
        if (args.backends is None and not (args.quick and c.slow_setup))
        or (args.backends is not None and c.name in args.backends)
    ]
    print(
        f"{len(scales) * len(batches) * len(cands)} rows: scales {scales}, batches {batches}, "
        f"{frame[0]}x{frame[1]} frames out, {budget:g} s of timing each",
        flush=True,
    )
    rows: list[Row] = []
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine,
        "device": str(device),
        "frame": list(frame),
        "available_backends": backends.available(),
    }
    g = torch.Generator().manual_seed(0)
    scored: set[tuple[str, str]] = set()
    for scale in scales:
        model = ESPCN.from_pretrained(scale).to(device)
        h, w = frame[0] // scale, frame[1] // scale
        for batch in batches:
            inputs = [torch.rand(batch, 1, h, w, generator=g).to(device) for _ in range(3)]
            expected = reference_output(model, inputs[0])
            for cand in cands:
                # Set5 PSNR: CPU rows, once a row (the same runner at every batch)
                psnr = device.type == "cpu" and scale == PSNR_SCALE and (cand.name, cand.precision) not in scored
                row = run_row(cand, model, inputs, expected, scale, budget, min_repeats, psnr=psnr)
                if row.psnr_set5 is not None:
                    scored.add((cand.name, cand.precision))
                if device.type == "cuda":
                    against_floor(
                        row,
                        machine.get("gpu"),
                        2 * macs_per_lr_pixel(model) * h * w,
                        4 * (h * w + h * w * scale * scale),
                    )
                rows.append(row)
                status = f"{row.ms_per_frame:.2f} ms/frame" if row.status == "ok" else f"{row.status}: {row.reason}"
                print(f"  x{scale} batch {batch} {h}x{w}: {cand.name} {cand.precision}: {status}", flush=True)
                write_json(args.json, result, rows)  # a run cut short keeps its rows
            del inputs, expected
    against_eager(rows)
    rows = grouped(rows)
    if device.type == "cpu" and not args.no_memory:
        print("peak memory (a child process per row)...", flush=True)
        for row in rows:
            if row.status == "ok":
                row.peak_mib = cpu_peak_mib_in_child(row.name, row.scale, row.batch, args.quick, threads, row.precision)
    print()
    print(format_table(rows))
    minutes = (time.perf_counter() - started) / 60
    result["run_minutes"] = round(minutes, 2)
    write_json(args.json, result, rows)
    plot_path = args.plot or args.json.with_suffix(".png")
    plot(rows, plot_path, f"ESPCN: {machine.get('gpu') or machine['cpu']}, {threads} thread(s)")
    print(f"\n{frame_label(rows)}; the whole run took {minutes:.1f} min; wrote {args.json} and {plot_path}")
    wrong = [
        f"x{r.scale} b{r.batch} {r.name} {r.precision}"
        for r in rows
        if r.status == "wrong" and any(c.ours and c.name == r.name for c in cands)
    ]
    if wrong:  # a check that only prints "wrong" in a table would pass
        print(f"\nWRONG output from espcn_fast: {'; '.join(wrong)}", file=sys.stderr)
        return 1
    return 0
