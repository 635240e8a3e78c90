"""The short table that ends benchmarks/gpu_check.sh, and its gpu_check.json.

    python benchmarks/gpu_summary.py OUTDIR [--dry-run]

Reads OUTDIR/steps.tsv (step, result, seconds, optional note), gpu.txt and the
benchmark JSONs; prints the GPU, each step's outcome, the 1080p rows
(ms/frame, speedup over eager in the same precision, multiple of the floor)
and the tile sweep's best shape per precision. A file that is missing or
unreadable (a step killed mid-write) is reported as such, never a traceback.
Exits 1 if a step failed ("cut" by the script's deadline and "unsupported"
are not failures).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any


def load_json(path: Path) -> tuple[Any, str | None]:
    """(data, None), or (None, why it could not be read): the summary must print whatever else there is."""
    try:
        return json.loads(path.read_text()), None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def read_steps(folder: Path) -> list[dict]:
    path = folder / "steps.tsv"
    if not path.exists():
        return []
    steps = []
    for line in path.read_text(errors="replace").splitlines():
        fields = line.split("\t")
        if len(fields) < 3 or not fields[2].isdigit():
            continue  # a line cut short by a kill
        steps.append(
            {
                "step": fields[0],
                "result": fields[1],
                "seconds": int(fields[2]),
                "note": fields[3] if len(fields) > 3 else "",
            }
        )
    return steps


def read_rows(folder: Path, unreadable: dict[str, str]) -> list[dict]:
    rows = []
    for name in ("bench.json", "bench_compile.json"):
        path = folder / name
        if path.exists():
            data, why = load_json(path)
            try:
                rows += [dict(r, source=name, gpu=data["machine"].get("gpu")) for r in data["rows"]]
            except (TypeError, KeyError, AttributeError, ValueError) as exc:
                unreadable[name] = why or f"unexpected content ({type(exc).__name__}: {exc})"
    return rows


def gpu_name(folder: Path, rows: list[dict]) -> str | None:
    """The GPU this run was on (nvidia-smi's line in gpu.txt, else the benchmark's), so that figures are not
    compared across H100 and H200 by mistake."""
    try:
        lines = (folder / "gpu.txt").read_text(errors="replace").splitlines()
        if len(lines) > 1 and lines[0].startswith("name"):
            return lines[1].strip()
    except OSError:
        pass
    return next((r["gpu"] for r in rows if r.get("gpu")), None)


# How steps.tsv's results read in the table (other exit codes: FAILED).
RESULT_WORDS = {
    "0": "ok",
    "124": "TIMED OUT",
    "137": "TIMED OUT (killed)",
    "no-time": "not run (out of time)",
    "cut": "cut (the script's deadline)",
    "unsupported": "unsupported here",
    "not-asked": "not asked (--steps)",
}
NOT_FAILURES = ("0", "dry-run", "absent", "no-time", "cut", "unsupported", "not-asked")


def geomean_us(row: dict) -> float:
    """One figure per tile shape: the geometric mean of its times (x2, x3, x4, x3 batch 8)."""
    times = list(row["us"].values())
    return math.prod(times) ** (1 / len(times))


def tile_sweep_lines(rows: list[dict]) -> list[str]:
    """Per precision: today's tile and the best correct one over all scales and batches, from tile_sweep.json.

    (Ranked by the geometric mean of the times: a shape that wins one scale
    by filling the last wave of blocks can lose another by more.)
    """
    lines = [
        "| precision | today's tile: mean us | best tile | its mean us | its x2 / x3 / x4 / x3 b8 us |",
        "|---|---:|---|---:|---|",
    ]
    for precision in dict.fromkeys(r["precision"] for r in rows):
        mine = [r for r in rows if r["precision"] == precision]
        today = next((r for r in mine if r["tile"] == "today's"), None)
        ok = [r for r in mine if r["ok"] and r["tile"] != "today's"]
        if not ok:
            lines.append(f"| {precision} | | no correct shape | | |")
            continue
        best = min(ok, key=geomean_us)
        lines.append(
            f"| {precision} | {f'{geomean_us(today):.1f}' if today else ''} | {best['tile']} | "
            f"{geomean_us(best):.1f} | {' / '.join(str(t) for t in best['us'].values())} |"
        )
    return lines


def sweep_rows(folder: Path, unreadable: dict[str, str]) -> tuple[list[dict], str]:
    """The tile sweep's rows and a heading: from tile_sweep.json, else what a sweep cut short left in .part."""
    path, part = folder / "tile_sweep.json", folder / "tile_sweep.json.part"
    if path.exists():
        data, why = load_json(path)
        if isinstance(data, dict) and isinstance(data.get("rows"), list):
            return data["rows"], ""
        unreadable[path.name] = why or "no rows"
    if part.exists():
        # Rows are written whole, each followed by a flush: close the list after the last complete one.
        text = part.read_text(errors="replace")
        cut = text.rfind("}}")
        try:
            data = json.loads(text[: cut + 2] + "\n]}") if cut >= 0 else {}
        except ValueError:
            data = {}
        rows = data.get("rows", []) if isinstance(data, dict) else []
        return rows, f"(the sweep did not finish: {len(rows)} rows from {part.name})\n"
    return [], ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path)
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args(argv)
    unreadable: dict[str, str] = {}
    steps, rows = read_steps(args.folder), read_rows(args.folder, unreadable)
    gpu = gpu_name(args.folder, rows)
    failed = [s["step"] for s in steps if s["result"] not in NOT_FAILURES]
    sweep, sweep_heading = sweep_rows(args.folder, unreadable)
    video = None
    if (args.folder / "video.json").exists():
        data, why = load_json(args.folder / "video.json")
        video = data.get("row") if isinstance(data, dict) else None
        if not isinstance(video, dict):
            unreadable["video.json"], video = why or "no row", None
    # Everything the summary reads, in the one file a remote runner surely brings back.
    (args.folder / "gpu_check.json").write_text(
        json.dumps(
            {
                "gpu": gpu,
                "steps": steps,
                "rows": rows,
                "video": video,
                "tile_sweep": sweep,
                "tile_sweep_note": sweep_heading.strip(),
                "unreadable": unreadable,
            },
            indent=2,
        )
        + "\n"
    )
    if not args.dry_run:
        print(f"\nGPU: {gpu or 'unknown (no name from nvidia-smi in gpu.txt, none in bench.json)'}")
    print("\n| step | result | s |\n|---|---|---:|")
    for s in steps:
        result = RESULT_WORDS.get(s["result"], s["result"] if not s["result"].isdigit() else f"FAILED ({s['result']})")
        note = f": {s['note']}" if s["note"] else ""
        print(f"| {s['step']} | {result}{note} | {s['seconds']} |")
    if rows:
        print("\n| x | b | backend | precision | ms/frame | vs eager | x floor |\n|---|---|---|---|---:|---:|---:|")
        for r in rows:
            try:
                if r["status"] != "ok":
                    print(
                        f"| {r['scale']} | {r['batch']} | {r['name']} | {r['precision']} | {r['status']}: "
                        f"{str(r.get('reason', ''))[:60]} | | |"
                    )
                    continue
                speed = r.get("speedup_vs_eager")
                print(
                    f"| {r['scale']} | {r['batch']} | {r['name']} | {r['precision']} | {r['ms_per_frame']:.4f} | "
                    f"{'' if speed is None else f'{speed:.2f}x'} | {r.get('extra', {}).get('x_floor', '')} |"
                )
            except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a row of another shape: said, not fatal
                print(f"| ? | ? | {str(r)[:60]} | | unreadable row ({type(exc).__name__}) | | |")
    elif not args.dry_run:
        print("\nno benchmark results")
    if sweep or sweep_heading:
        print("\n" + sweep_heading + "\n".join(tile_sweep_lines(sweep)))
    if video:
        print(
            f"\nvideo {video['input']} -> {video['output']}: pipeline {video['pipeline_fps']} fps, network alone "
            f"{video['network_fps']} fps ({100 * video['overhead']:+.0f}%)"
        )
    for name, why in unreadable.items():
        print(f"\n{name} unreadable: {why[:200]}")
    if failed:
        print(f"\nFAILED steps: {', '.join(failed)}")
        return 1
    if not args.dry_run and not any(s["result"] == "0" for s in steps):  # nothing failed, nothing ran either
        print("\ngpu_check: no step ran to completion")
        return 1
    print("\ngpu_check: dry run complete" if args.dry_run else "\ngpu_check: all steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
