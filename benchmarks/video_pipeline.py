"""End-to-end video: `espcn-fast video`'s pipeline against the network alone, same frames.

    python benchmarks/video_pipeline.py                    # 1080p out at x3, on this machine's device
    python benchmarks/video_pipeline.py --device cpu --frames 60 --json benchmarks/results/video-cpu.json

Makes an H.264 video (a pan across a smooth random scene, with an AAC track)
whose frames are 1920x1080 / scale, then times
- the network alone: FastESPCN on the decoded Y planes already on the device,
  in the pipeline's batches (the floor for the whole job);
- each stage of the pipeline on its own (decode; the network stage: Y through
  the network, chroma, back to host planes; encode), in wall and CPU time;
- the pipeline: `espcn_fast.video.upscale_video` from the file to an H.264
  file (decode, network, chroma, encode overlapped; x264 preset --preset).
The target: the pipeline adds at most 25% to the network's time. The stage
times say what any overlap could reach: not less than the slowest stage, nor
less than the stages' CPU time spread over the machine's cores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from espcn_fast.benchmark.malloc_env import reexec_with_malloc_env

if __name__ == "__main__":
    reexec_with_malloc_env()

import av  # noqa: E402
import torch  # noqa: E402

from espcn_fast import FastESPCN  # noqa: E402
from espcn_fast.benchmark.machine import describe  # noqa: E402
from espcn_fast.benchmark.synthetic_video import make_video  # noqa: E402
from espcn_fast.video import _add_video_stream, _Network, _video_frame, _yuv420, upscale_video  # noqa: E402


class Clock:
    """Wall and process CPU seconds (all threads) of a block of work."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def decode(path: Path) -> tuple[list, Clock]:
    with Clock() as clock, av.open(str(path)) as c:
        c.streams.video[0].thread_type = "AUTO"  # as the pipeline decodes
        frames = [_yuv420(f) for f in c.decode(video=0)]
    return frames, clock


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def network_alone(model: FastESPCN, frames: list, device: torch.device, batch: int) -> Clock:
    """The floor: FastESPCN on the decoded Y planes already on the device, in the pipeline's batches."""
    ys = [torch.from_numpy(f.y) for f in frames]
    batches = [torch.stack(ys[i : i + batch])[:, None].to(device).float().div_(255) for i in range(0, len(ys), batch)]
    with torch.no_grad():
        model(batches[0])  # warm-up
        sync(device)
        with Clock() as clock:
            for b in batches:
                model(b)
            sync(device)
    return clock


def network_stage(model: FastESPCN, frames: list, scale: int, device: torch.device, batch: int) -> tuple[list, Clock]:
    """The pipeline's middle stage on its own: host planes in, Y through the network, chroma, host planes out."""
    stage = _Network(model, scale, device)
    stage.finish(stage.submit(frames[:batch]))  # warm-up
    out: list = []
    with Clock() as clock:
        for i in range(0, len(frames), batch):
            out += stage.finish(stage.submit(frames[i : i + batch]))
    return out, clock


def encode(src: Path, dst: Path, planes: list, preset: str) -> Clock:
    """The pipeline's encoder on its own, with the pipeline's settings, on the upscaled planes."""
    with av.open(str(src)) as c, av.open(str(dst), "w") as out, Clock() as clock:
        stream = _add_video_stream(out, c.streams.video[0], "libx264", planes[0][1].shape, 18, preset)
        for pts, y, u, v in planes:
            frame = _video_frame(y, u, v)
            frame.pts, frame.time_base = pts, c.streams.video[0].time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return clock


def ms(seconds: float, frames: int) -> float:
    return round(1000 * seconds / frames, 2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"))
    p.add_argument("--scale", type=int, default=3, choices=(2, 3, 4))
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--batch", type=int, default=4, help="frames per network call (default 4, as the CLI)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--preset", default="veryfast", help="x264 preset of the output (default veryfast)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cores = os.cpu_count() or 1
    model = FastESPCN.from_pretrained(args.scale, backend=args.backend, precision=args.precision).to(device)
    h, w = 1080 // args.scale, 1920 // args.scale
    n = args.frames
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.mp4", Path(tmp) / "out.mp4"
        make_video(
            src,
            n,
            h,
            w,
            rate=30,
            encoder_options={"crf": "18", "preset": "veryfast"},
            audio_rate=48000,
            audio_frames=n * 48000 // 30 // 1024,
            step=4,
        )
        frames, dec = decode(src)
        net = network_alone(model, frames, device, args.batch)
        planes, mid = network_stage(model, frames, args.scale, device, args.batch)
        enc = encode(src, Path(tmp) / "encoded.mp4", planes, args.preset)
        upscale_video(src, Path(tmp) / "warm.mp4", model, args.scale, device, batch=args.batch, preset=args.preset)
        with Clock() as pipe:
            result = upscale_video(src, dst, model, args.scale, device, batch=args.batch, preset=args.preset)
    stages = {"decode": dec, "network stage": mid, "encode": enc}
    serial = sum(c.wall for c in stages.values())
    stage_cpu = sum(c.cpu for c in stages.values())
    # No overlap of the three stages can beat the slowest one, nor (on the CPU) the CPU time they need
    # spread over every core: the network alone keeps this machine's cores busy.
    bound = max(max(c.wall for c in stages.values()), stage_cpu / cores)
    row = {
        "frames": result.frames,
        "input": f"{w}x{h}",
        "output": f"{w * args.scale}x{h * args.scale}",
        "network_fps": round(n / net.wall, 2),
        "pipeline_fps": round(result.fps, 2),
        "network_s": round(net.wall, 3),
        "pipeline_s": round(result.seconds, 3),
        "overhead": round(result.seconds / net.wall - 1, 3),
        "batch": args.batch,
        "preset": args.preset,
        "backend": model.backend_for(torch.empty(1, 1, 1, 1, device=device)),
        "precision": args.precision,
        "cores": cores,
        "ms_per_frame": {
            "network alone": {"wall": ms(net.wall, n), "cpu": ms(net.cpu, n)},
            **{name: {"wall": ms(c.wall, n), "cpu": ms(c.cpu, n)} for name, c in stages.items()},
            "stages one after another": {"wall": ms(serial, n), "cpu": ms(stage_cpu, n)},
            "best overlap possible": {"wall": ms(bound, n)},
            "pipeline": {"wall": ms(result.seconds, n), "cpu": ms(pipe.cpu, n)},
        },
        "pipeline_vs_best_overlap": round(result.seconds / bound, 3),
    }
    machine = describe(device, cores)
    print(
        f"device: {machine.get('gpu') or machine['cpu']}, {cores} cores, torch {torch.__version__}, "
        f"{n} frames {row['input']} -> {row['output']}, batch {args.batch}, x264 {args.preset}"
    )
    print("| ms per frame | wall | CPU (all threads) |")
    print("|---|---:|---:|")
    for name, t in row["ms_per_frame"].items():
        print(f"| {name} | {t['wall']:.1f} | {t['cpu']:.1f} |" if "cpu" in t else f"| {name} | {t['wall']:.1f} | |")
    print(
        f"network alone {row['network_fps']:.1f} fps, pipeline {row['pipeline_fps']:.1f} fps: "
        f"the pipeline adds {100 * row['overhead']:+.0f}% to the network's time (target <= +25%); "
        f"{row['pipeline_vs_best_overlap']:.2f}x the best overlap possible here"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "command": "python benchmarks/video_pipeline.py "
                    + " ".join(sys.argv[1:] if argv is None else argv),
                    "machine": machine,
                    "row": row,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
