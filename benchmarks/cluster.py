"""Images per second of the Ray image job with 1 and 2 workers next to the single-process command, on the
same files (made here: smooth random pictures), and frames per second of the chunked video job likewise
(a synthetic clip, a keyframe a second), all in one run.

    python benchmarks/cluster.py                       # 200 images of 1024x768 at x3 (Urban100's size)
    python benchmarks/cluster.py --count 40 --size 512 384 --scale 2 --json outputs/cluster.json
    python benchmarks/cluster.py --count 0 --video-seconds 20 --video-size 320 180   # the video job only

Each configuration runs as its own ``espcn-fast upscale`` process (start-up included, as a user runs it)
into a fresh output folder; the cluster runs start a local Ray cluster (``--cluster local``). Prints a
table: wall seconds, images per second, the ratio to the single process, and the cluster's fixed
start-up (Ray and the workers' model loading) measured apart. The video rows also give the job's own
split (cutting, the chunks, the join by stream copy), as the command prints it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
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
from espcn_fast.benchmark.synthetic_video import make_video, scene
from espcn_fast.image_io import write_image


def make_images(folder: Path, count: int, width: int, height: int) -> None:
    """``count`` PNGs of ``width`` x ``height``, each a different smooth random picture."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        write_image(torch.from_numpy(scene(height, width, seed=i)).permute(2, 0, 1), folder / f"img_{i:04d}.png")


def run(cmd: list[str], env: dict[str, str], out: list[str] | None = None) -> float:
    """Wall seconds of ``cmd``; its failure stops the benchmark with its output (its stdout added to ``out``)."""
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    if out is not None:
        out.append(done.stdout)
    return seconds


def _split(stdout: str) -> dict[str, float]:
    """The chunked job's own seconds (plan, chunks, join) from the line ``espcn-fast video`` prints."""
    found = re.findall(r"(plan|chunks|join) ([0-9.]+) s", stdout)
    return {k: float(v) for k, v in found}


def video_rows(work: Path, args: argparse.Namespace, env: dict[str, str]) -> tuple[list[dict], float]:
    """The video job on one synthetic clip: single process, cluster with 1 and 2 workers; and the fixed cost
    of a cluster video job (a 2-frame clip: Ray, a task's model, the cut and the join)."""
    frames = round(args.video_seconds * 25)
    w, h = args.video_size
    # A camera-like input: x264 at crf 18 with a keyframe a second, where chunks can be cut.
    clip = make_video(work / "clip.mp4", frames=frames, h=h, w=w, encoder_options={"crf": "18", "g": "25"})
    cli = [sys.executable, "-m", "espcn_fast", "video", str(clip), "--scale", str(args.scale), "--device", "cpu"]
    cluster = ["--cluster", "local", "--chunk-seconds", str(args.chunk_seconds)]
    rows = []
    for name, extra in [
        ("video, single process", []),
        ("video, cluster, 1 worker", [*cluster, "--workers", "1"]),
        ("video, cluster, 2 workers", [*cluster, "--workers", "2"]),
    ]:
        out, printed = work / f"video_{len(rows)}.mp4", []
        seconds = run([*cli, "-o", str(out), *extra], env, printed)
        row = {"name": name, "seconds": round(seconds, 2), "frames_per_s": round(frames / seconds, 2)}
        row.update(_split(printed[0]))
        rows.append(row)
        out.unlink()
        print(f"  {name}: {seconds:.1f} s", flush=True)
    tiny = make_video(work / "tiny.mp4", frames=2, h=16, w=16, audio=False)
    fixed = run([*cli[:4], str(tiny), "-o", str(work / "tiny_x.mp4"), *cli[5:], *cluster, "--workers", "1", "-q"], env)
    return rows, fixed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--size", type=int, nargs=2, default=[1024, 768], metavar=("W", "H"))
    p.add_argument("--scale", type=int, default=3, choices=(2, 3, 4))
    p.add_argument("--video-seconds", type=float, default=20.0, help="the video clip's length (0: no video rows)")
    p.add_argument("--video-size", type=int, nargs=2, default=[320, 180], metavar=("W", "H"))
    p.add_argument("--chunk-seconds", type=float, default=2.0)
    p.add_argument("--json", type=Path, default=Path("outputs/benchmarks/cluster.json"))
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="espcn_cluster_bench_"))
    env = {**os.environ, **MALLOC_ENV}
    env.pop("RAY_ADDRESS", None)  # always a local cluster here
    rows, fixed, vrows, vfixed = [], None, [], None
    try:
        if args.count > 0:
            rows, fixed = image_rows(work, args, env)
        if args.video_seconds > 0:
            vrows, vfixed = video_rows(work, args, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/cluster.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": describe(torch.device("cpu"), os.cpu_count() or 1),
        "scale": args.scale,
    }
    if rows:
        base = rows[0]["images_per_s"]
        for row in rows:
            row["vs_single"] = round(row["images_per_s"] / base, 3)
        print(f"\n{args.count} images of {args.size[0]}x{args.size[1]} at x{args.scale}, {os.cpu_count()} cores\n")
        print("| run | seconds | images/s | vs single process |\n|---|---:|---:|---:|")
        for row in rows:
            print(f"| {row['name']} | {row['seconds']:.1f} | {row['images_per_s']:.2f} | {row['vs_single']:.2f}x |")
        print(f"\nthe cluster's fixed cost (a job of one 16x16 image: Ray, a worker, its model): {fixed:.1f} s")
        result.update(images=args.count, size=args.size, rows=rows, cluster_fixed_seconds=round(fixed, 2))
    if vrows:
        base = vrows[0]["frames_per_s"]
        for row in vrows:
            row["vs_single"] = round(row["frames_per_s"] / base, 3)
        w, h = args.video_size
        print(
            f"\na {args.video_seconds:g} s clip of {w}x{h} at 25 fps, x{args.scale} "
            f"({w * args.scale}x{h * args.scale}), {args.chunk_seconds:g} s chunks, {os.cpu_count()} cores\n"
        )
        print("| run | seconds | frames/s | vs single process | chunks s | join s |\n|---|---:|---:|---:|---:|---:|")
        for row in vrows:
            chunks = f"{row['chunks']:.1f}" if "chunks" in row else "-"
            join = f"{row['join']:.2f}" if "join" in row else "-"
            print(
                f"| {row['name']} | {row['seconds']:.1f} | {row['frames_per_s']:.1f} | {row['vs_single']:.2f}x "
                f"| {chunks} | {join} |"
            )
        print(f"\nthe cluster video job's fixed cost (a 2-frame 16x16 clip): {vfixed:.1f} s")
        result.update(
            video_seconds=args.video_seconds,
            video_size=args.video_size,
            chunk_seconds=args.chunk_seconds,
            video_rows=vrows,
            video_cluster_fixed_seconds=round(vfixed, 2),
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    with replacing(args.json) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


def image_rows(work: Path, args: argparse.Namespace, env: dict[str, str]) -> tuple[list[dict], float]:
    """The image job: single process, cluster with 1 and 2 workers; and the cluster's fixed cost."""
    cli = [sys.executable, "-m", "espcn_fast", "upscale", str(work / "in"), "--scale", str(args.scale), "-q"]
    cli += ["--device", "cpu"]
    make_images(work / "in", args.count, *args.size)
    rows = []
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
    one = [*cli[:4], str(work / "one"), "-o", str(work / "one_x"), *cli[5:], "--cluster", "local", "--workers", "1"]
    return rows, run(one, env)


if __name__ == "__main__":
    sys.exit(main())
