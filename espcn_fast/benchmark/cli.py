"""``python benchmarks/run.py``: the grid of rows on this machine, then the table, the JSON and the chart.

    python benchmarks/run.py                      # the whole suite on this machine's device
    python benchmarks/run.py --quick              # a smoke run: small frames, short timings, no compiles
    python benchmarks/run.py --device cpu --scales 3 --batch 1 --backends espcn_fast:cpu eager

Each row is checked against the float64 reference model on the benchmark input
(the reference of the weights it runs) before it is timed, within the tolerance
of its precision (``config.tolerance``; ours in int8 against its own arithmetic, a tighter one); a wrong row is flagged and not timed
(and a wrong row of espcn_fast's makes the exit status 1); a row that would not
fit the machine's memory, or whose instruction set this CPU lacks (our bf16 and
int8 rows), is skipped with the reason. On the CPU our rows run in fp32, bf16
and int8 (int8 with the weights fine-tuned for it where the package ships them,
the float weights, said in the row's label, until then). CPU rows at x3 are
also scored on Set5 (its standard x3 LR inputs, the protocol of
espcn_fast.evaluate): the Set5 x3 dB column. The table groups each scale and
batch's rows by precision (fp32, then tf32, fp16, bf16, int8), so that each
of ours stands with the peers of its class. Prints a table, the speedups at x3
1080p batch 1 (``speedups.summary_lines``) and the run's length, and writes a
JSON file with every number and the machine (--json, rewritten after each row)
and a bar chart of frames per second (--plot).
"""

from __future__ import annotations

import argparse
import datetime
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
from .report import format_table, frame_label, grouped, plot, write_json
from .speedups import against_eager, against_floor, summary_lines

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
    p.add_argument("--no-memory", action="store_true", help="skip the CPU peak-memory measurement (one call a row)")
    return p.parse_args(argv)


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
        # The frames of every batch are the first of one pool of the largest batch, so that the float64
        # reference (seconds a frame on 2 cores, most of a full run's fixed cost) is computed once a scale.
        pool = [torch.rand(max(batches), 1, h, w, generator=g).to(device) for _ in range(3)]
        # By the weights' note ("" the shipped float weights) and the arithmetic checked against.
        references: dict[tuple[str, str | None], torch.Tensor] = {}
        for batch in batches:
            inputs = [p[:batch] for p in pool]
            for cand in cands:
                # A row that runs other weights (our int8 rows) is checked against their own reference.
                row_model, note = cand.weights(model) if cand.weights else (model, "")
                key = ("" if row_model is model else note, cand.arithmetic)
                if key not in references:
                    references[key] = reference_output(row_model, pool[0], arithmetic=cand.arithmetic)
                # Set5 PSNR: CPU rows, once a row (the same runner at every batch)
                psnr = device.type == "cpu" and scale == PSNR_SCALE and (cand.name, cand.precision) not in scored
                row = run_row(
                    cand,
                    row_model,
                    inputs,
                    references[key][:batch],
                    scale,
                    budget,
                    min_repeats,
                    psnr=psnr,
                    memory=device.type == "cpu" and not args.no_memory,
                    note=note,
                )
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
        del pool, inputs, references
    against_eager(rows)
    rows = grouped(rows)
    print()
    print(format_table(rows))
    summary = summary_lines(rows, threads)
    if summary:
        print("\n" + "\n".join(summary))
    result["summary"] = summary
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
