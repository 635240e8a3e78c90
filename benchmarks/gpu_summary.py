"""The short table that ends benchmarks/gpu_check.sh, and its gpu_check.json.

    python benchmarks/gpu_summary.py OUTDIR [--dry-run]

Reads OUTDIR/steps.tsv (step, exit code, seconds) and the benchmark JSONs;
prints each step's outcome, the 1080p rows (ms/frame, speedup over eager in
the same precision, multiple of the floor) and the tile sweep's best shape per
precision. Exits 1 if a step failed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def read_steps(folder: Path) -> list[dict]:
    path = folder / "steps.tsv"
    if not path.exists():
        return []
    steps = []
    for line in path.read_text().splitlines():
        name, rc, seconds = line.split("\t")
        steps.append({"step": name, "result": rc, "seconds": int(seconds)})
    return steps


def read_rows(folder: Path) -> list[dict]:
    rows = []
    for name in ("bench.json", "bench_compile.json"):
        path = folder / name
        if path.exists():
            data = json.loads(path.read_text())
            rows += [dict(r, source=name, gpu=data["machine"].get("gpu")) for r in data["rows"]]
    return rows


# How steps.tsv's results read in the table (other exit codes: FAILED).
RESULT_WORDS = {"0": "ok", "124": "TIMED OUT", "no-time": "not run (out of time)", "not-asked": "not asked (--steps)"}


def geomean_us(row: dict) -> float:
    """One figure per tile shape: the geometric mean of its times (x2, x3, x4, x3 batch 8)."""
    times = list(row["us"].values())
    return math.prod(times) ** (1 / len(times))


def tile_sweep_lines(rows: list[dict]) -> list[str]:
    """Per precision: today's tile and the best correct one over all scales and batches, from tile_sweep.json.

    (Ranked by the geometric mean of the times: a shape that wins one scale
    by filling the last wave of blocks can lose another by more.)
    """
    lines = ["| precision | today's tile: mean us | best tile | its mean us | its x2 / x3 / x4 / x3 b8 us |",
             "|---|---:|---|---:|---|"]
    for precision in dict.fromkeys(r["precision"] for r in rows):
        mine = [r for r in rows if r["precision"] == precision]
        today = next((r for r in mine if r["tile"] == "today's"), None)
        ok = [r for r in mine if r["ok"] and r["tile"] != "today's"]
        if not ok:
            lines.append(f"| {precision} | | no correct shape | | |")
            continue
        best = min(ok, key=geomean_us)
        lines.append(f"| {precision} | {f'{geomean_us(today):.1f}' if today else ''} | {best['tile']} | "
                     f"{geomean_us(best):.1f} | {' / '.join(str(t) for t in best['us'].values())} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path)
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args(argv)
    steps, rows = read_steps(args.folder), read_rows(args.folder)
    failed = [s["step"] for s in steps if s["result"] not in ("0", "dry-run", "absent", "no-time", "not-asked")]
    (args.folder / "gpu_check.json").write_text(json.dumps({"steps": steps, "rows": rows}, indent=2) + "\n")
    print("\n| step | result | s |\n|---|---|---:|")
    for s in steps:
        result = RESULT_WORDS.get(s["result"], s["result"] if not s["result"].isdigit() else f"FAILED ({s['result']})")
        print(f"| {s['step']} | {result} | {s['seconds']} |")
    if rows:
        print("\n| x | b | backend | precision | ms/frame | vs eager | x floor |\n|---|---|---|---|---:|---:|---:|")
        for r in rows:
            if r["status"] != "ok":
                print(f"| {r['scale']} | {r['batch']} | {r['name']} | {r['precision']} | {r['status']}: {r['reason'][:60]} | | |")
                continue
            speed = r.get("speedup_vs_eager")
            print(f"| {r['scale']} | {r['batch']} | {r['name']} | {r['precision']} | {r['ms_per_frame']:.4f} | "
                  f"{'' if speed is None else f'{speed:.2f}x'} | {r['extra'].get('x_floor', '')} |")
    elif not args.dry_run:
        print("\nno benchmark results")
    sweep = args.folder / "tile_sweep.json"
    if sweep.exists():
        print("\n" + "\n".join(tile_sweep_lines(json.loads(sweep.read_text())["rows"])))
    video = args.folder / "video.json"
    if video.exists():
        v = json.loads(video.read_text())["row"]
        print(f"\nvideo {v['input']} -> {v['output']}: pipeline {v['pipeline_fps']} fps, network alone "
              f"{v['network_fps']} fps ({100 * v['overhead']:+.0f}%)")
    if failed:
        print(f"\nFAILED steps: {', '.join(failed)}")
        return 1
    print("\ngpu_check: dry run complete" if args.dry_run else "\ngpu_check: all steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
