"""End-to-end video: `espcn-fast video`'s pipeline against the network alone, same frames.

    python benchmarks/video_pipeline.py                    # 1080p out at x3, on this machine's device
    python benchmarks/video_pipeline.py --device cpu --frames 60 --json benchmarks/results/video-cpu.json

Makes an H.264 video (a pan across a smooth random scene, with an AAC track)
whose frames are 1920x1080 / scale, then times
- the network alone: FastESPCN on the decoded Y planes already on the device,
  in the pipeline's batches (the floor for the whole job);
- the pipeline: `espcn_fast.video.upscale_video` from the file to an H.264
  file (decode, network, chroma, encode overlapped; x264 preset --preset).
The target: the pipeline adds at most 25% to the network's time.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.malloc_env import reexec_with_malloc_env  # noqa: E402

if __name__ == "__main__":
    reexec_with_malloc_env()

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.machine import describe  # noqa: E402
from espcn_fast import FastESPCN  # noqa: E402
from espcn_fast.video import _yuv420, upscale_video  # noqa: E402


def make_input(path: Path, frames: int, h: int, w: int) -> None:
    g = np.random.default_rng(0)
    scene = torch.nn.functional.interpolate(torch.from_numpy(g.random((1, 3, h // 8 + 2, (w + 4 * frames) // 8 + 2),
                                                                    dtype=np.float32)),
                                            size=(h, w + 4 * frames), mode="bilinear", align_corners=False)[0]
    scene = (scene.clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        tone = out.add_stream("aac", rate=48000)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(scene[:, 4 * i:4 * i + w]), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        for i in range(frames * 48000 // 30 // 1024):
            samples = np.sin(np.arange(1024, dtype=np.float32)[None] * 0.03 + i).astype(np.float32)
            af = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
            af.sample_rate, af.pts = 48000, i * 1024
            out.mux(tone.encode(af))
        out.mux(tone.encode(None))


def network_alone(model: FastESPCN, path: Path, device: torch.device, batch: int) -> float:
    with av.open(str(path)) as c:
        ys = [torch.from_numpy(_yuv420(f).y) for f in c.decode(video=0)]
    batches = [torch.stack(ys[i:i + batch])[:, None].to(device).float().div_(255) for i in range(0, len(ys), batch)]
    with torch.no_grad():
        model(batches[0])  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for b in batches:
            model(b)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"))
    p.add_argument("--scale", type=int, default=3, choices=(2, 3, 4))
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--preset", default="veryfast", help="x264 preset of the output (default veryfast)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    threads = os.cpu_count() or 1
    model = FastESPCN.from_pretrained(args.scale, backend=args.backend, precision=args.precision).to(device)
    h, w = 1080 // args.scale, 1920 // args.scale
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.mp4", Path(tmp) / "out.mp4"
        make_input(src, args.frames, h, w)
        net = network_alone(model, src, device, args.batch)
        upscale_video(src, Path(tmp) / "warm.mp4", model, args.scale, device, batch=args.batch, preset=args.preset)
        result = upscale_video(src, dst, model, args.scale, device, batch=args.batch, preset=args.preset)
    row = {
        "frames": result.frames, "input": f"{w}x{h}", "output": f"{w * args.scale}x{h * args.scale}",
        "network_fps": round(args.frames / net, 2), "pipeline_fps": round(result.fps, 2),
        "network_s": round(net, 3), "pipeline_s": round(result.seconds, 3),
        "overhead": round(result.seconds / net - 1, 3), "batch": args.batch, "preset": args.preset,
        "backend": model.backend_for(torch.empty(1, 1, 1, 1, device=device)), "precision": args.precision,
    }
    machine = describe(device, threads)
    print(f"device: {machine.get('gpu') or machine['cpu']}, torch {torch.__version__}")
    print("| frames | in -> out | network alone fps | pipeline fps | pipeline over network |")
    print("|---:|---|---:|---:|---:|")
    print(f"| {row['frames']} | {row['input']} -> {row['output']} | {row['network_fps']:.1f} | "
          f"{row['pipeline_fps']:.1f} | {100 * row['overhead']:+.0f}% |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": "python benchmarks/video_pipeline.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "machine": machine, "row": row}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
