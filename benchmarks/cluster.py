"""Images per second of the Ray image job with 1 and 2 workers next to the single-process command, on the
same files (made here: smooth random pictures), all in one run.

    python benchmarks/cluster.py                       # 200 images of 1024x768 at x3 (Urban100's size)
    python benchmarks/cluster.py --count 40 --size 512 384 --scale 2 --json outputs/cluster.json

Each configuration runs as its own ``espcn-fast upscale`` process (start-up included, as a user runs it)
into a fresh output folder; the cluster runs start a local Ray cluster (``--cluster local``). Prints a
table: wall seconds, images per second, the ratio to the single process, and the cluster's fixed
start-up (Ray and the workers' model loading) measured apart.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from espcn_fast.atomic_write import replacing
from espcn_fast.benchmark.machine import describe
from espcn_fast.benchmark.malloc_env import MALLOC_ENV
from espcn_fast.benchmark.synthetic_video import scene
from espcn_fast.image_io import write_image


def make_images(folder: Path, count: int, width: int, height: int) -> None:
    """``count`` PNGs of ``width`` x ``height``, each a different smooth random picture."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        write_image(torch.from_numpy(scene(height, width, seed=i)).permute(2, 0, 1), folder / f"img_{i:04d}.png")


def run(cmd: list[str], env: dict[str, str]) -> float:
    """Wall seconds of ``cmd``; its failure stops the benchmark with its output."""
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--size", type=int, nargs=2, default=[1024, 768], metavar=("W", "H"))
    p.add_argument("--scale", type=int, default=3, choices=(2, 3, 4))
    p.add_argument("--json", type=Path, default=Path("outputs/benchmarks/cluster.json"))
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="espcn_cluster_bench_"))
    env = {**os.environ, **MALLOC_ENV}
    env.pop("RAY_ADDRESS", None)  # always a local cluster here
    cli = [
        sys.executable,
        "-m",
        "espcn_fast",
        "upscale",
        str(work / "in"),
        "--scale",
        str(args.scale),
        "-q",
        "--device",
        "cpu",
    ]
    rows = []
    try:
        make_images(work / "in", args.count, *args.size)
        configs = [
            ("single process", []),
            ("cluster, 1 worker", ["--cluster", "local", "--workers", "1"]),
            ("cluster, 2 workers", ["--cluster", "local", "--workers", "2"]),
        ]
        for name, extra in configs:
            out = work / f"out_{len(rows)}"
            seconds = run([*cli, "-o", str(out), *extra], env)
            rows.append({"name": name, "seconds": round(seconds, 2), "images_per_s": round(args.count / seconds, 3)})
            shutil.rmtree(out)
            print(f"  {name}: {seconds:.1f} s", flush=True)
        # The cluster's fixed cost: a job of one tiny image starts Ray, a worker and its model, and stops them.
        make_images(work / "one", 1, 16, 16)
        fixed = run(
            [
                sys.executable,
                "-m",
                "espcn_fast",
                "upscale",
                str(work / "one"),
                "-o",
                str(work / "one_x"),
                "--scale",
                str(args.scale),
                "-q",
                "--device",
                "cpu",
                "--cluster",
                "local",
                "--workers",
                "1",
            ],
            env,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = rows[0]["images_per_s"]
    for row in rows:
        row["vs_single"] = round(row["images_per_s"] / base, 3)
    print(f"\n{args.count} images of {args.size[0]}x{args.size[1]} at x{args.scale}, {os.cpu_count()} cores\n")
    print("| run | seconds | images/s | vs single process |\n|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['name']} | {row['seconds']:.1f} | {row['images_per_s']:.2f} | {row['vs_single']:.2f}x |")
    print(f"\nthe cluster's fixed cost (a job of one 16x16 image: Ray, a worker, its model): {fixed:.1f} s")
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/cluster.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": describe(torch.device("cpu"), os.cpu_count() or 1),
        "images": args.count,
        "size": args.size,
        "scale": args.scale,
        "rows": rows,
        "cluster_fixed_seconds": round(fixed, 2),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    with replacing(args.json) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
