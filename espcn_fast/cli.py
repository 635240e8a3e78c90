"""``espcn-fast``: super-resolve images and reproduce the paper's table.

espcn-fast upscale IMAGE_OR_FOLDER... -o OUT --scale 3
espcn-fast video IN.mp4 -o OUT.mp4 --scale 3
espcn-fast eval --scale 3 --sets Set5 Set14
espcn-fast export --scale 3 -o espcn_x3.onnx
espcn-fast demo
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import torch

from . import ops, published
from .atomic_write import existing_output, replacing
from .backends import BACKENDS, resolve
from .data_dir import find_data_dir
from .devices import device_problem
from .evaluate import SetScore, evaluate_sets
from .fast import PRECISIONS, FastESPCN
from .file_job import FileJobError, upscale_file
from .image_io import IMAGE_SUFFIXES, ImageReadError, list_images, read_image, write_image
from .memory_budget import parse_size
from .model import ESPCN
from .upscale import OOM_LAST_TILE, upscale_image
from .weights import WeightsError, load_weights, scale_of

if TYPE_CHECKING:
    from .video import VideoResult


class CliError(Exception):
    """An error to print as one line, without a traceback."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a container's or systemd's stop), raised where the program is, so
    that it cleans up as on Ctrl-C: temporary files removed, earlier outputs left as they were."""


def _terminate(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
    raise Terminated


def _load_reference(scale: int, weights: Path | None, precision: str = "fp32") -> ESPCN:
    """The shipped weights for ``scale`` (those for int8 with ``precision="int8"``), or ``weights``
    checked to be for it."""
    if weights is None:
        return ESPCN.from_pretrained(scale, precision=precision)
    state = load_weights(weights)
    if scale_of(state) != scale:
        raise WeightsError(f"{weights} holds weights for scale {scale_of(state)}, not --scale {scale}")
    reference = ESPCN(scale)
    reference.load_state_dict(state)
    return reference


def _load_model(
    scale: int, weights: Path | None, device: str, backend: str = "auto", precision: str = "fp32"
) -> FastESPCN:
    reference = _load_reference(scale, weights, precision)
    try:
        model = FastESPCN.from_reference(reference, backend=backend, precision=precision)
        chosen = resolve(backend, torch.device(device))  # a backend that can't run on this device fails here
        if precision in ops.CPU_ONLY_PRECISIONS and chosen != "cpu":
            raise ValueError(f"--precision {precision} runs on the CPU only (--device cpu)")
        if chosen == "cpu" and precision != "fp32" and precision in ops.CPU_PRECISIONS:
            ops.cpu_isa(precision)  # a CPU without the instruction set: the error names it
    except (RuntimeError, ValueError) as exc:
        raise CliError(str(exc)) from None
    return model.to(device)


def _default_device(name: str | None) -> str:
    """``--device`` checked against this machine (``cuda`` when there is a GPU and none is named)."""
    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    problem = device_problem(name)
    if problem is not None:
        raise CliError(f"--device {name}: {problem}")
    return name


def _check_output_suffix(out: Path) -> None:
    """An ``-o`` ending in an image suffix that is not written here (``.gif``) is a mistake, not a folder's
    name: refused, where it would otherwise become a folder of PNGs. An existing folder is taken as one."""
    from PIL import Image

    suffix = out.suffix.lower()
    if suffix in IMAGE_SUFFIXES or suffix not in Image.registered_extensions() or out.is_dir():
        return
    raise CliError(
        f"-o {out}: {out.suffix} is not a format espcn-fast writes; give a file ending in "
        f"{', '.join(IMAGE_SUFFIXES)}, or a folder"
    )


def _plan_outputs(inputs: list[Path], out: Path) -> list[tuple[Path, Path]]:
    """Pairs (input file, output file); a folder in gives a folder out."""
    _check_output_suffix(out)
    single_file = len(inputs) == 1 and inputs[0].is_file() and out.suffix.lower() in IMAGE_SUFFIXES
    if single_file:
        return [(inputs[0], out)]
    pairs = []
    for item in inputs:
        if item.is_dir():
            pairs += [(f, out / f"{f.stem}.png") for f in list_images(item)]
        elif item.exists():
            pairs.append((item, out / f"{item.stem}.png"))
        else:
            raise CliError(f"input not found: {item}")
    return pairs


def cmd_upscale(args: argparse.Namespace) -> int:
    """``espcn-fast upscale``: images or folders in, PNGs out; a bad file, or an existing output
    without ``--overwrite``, is reported and skipped."""
    if args.cluster is not None:
        return _upscale_on_cluster(args)
    device = _default_device(args.device)
    model = _load_model(args.scale, args.weights, device, args.backend, args.precision)
    pairs = _plan_outputs(args.inputs, args.output)
    for src, dst in pairs:
        if dst.exists() and dst.resolve() == src.resolve():
            raise CliError(f"refusing to overwrite the input {src}; choose another -o")
    if len({dst for _, dst in pairs}) != len(pairs):
        raise CliError("two inputs would write the same output name; upscale them separately")
    if pairs == [(args.inputs[0], args.output)] and existing_output(args.output, args.overwrite):
        raise CliError(existing_output(args.output, args.overwrite))  # one named output: before the work
    failed = kept = 0
    iterator = pairs
    if len(pairs) > 1 and not args.quiet:
        from tqdm import tqdm

        iterator = tqdm(pairs, desc=f"upscale x{args.scale}", unit="img")
    for src, dst in iterator:
        if existing_output(dst, args.overwrite):
            print(f"skipped: {existing_output(dst, args.overwrite)}", file=sys.stderr)
            kept += 1
            continue
        try:
            width, height = upscale_file(src, dst, model, args.scale, device, args.tile, args.max_memory)
        except FileJobError as exc:
            print(f"{exc.kind}: {exc}", file=sys.stderr)
            failed += 1
            continue
        if not args.quiet:
            print(f"{src} -> {dst} ({width}x{height})")
    if failed or kept:
        parts = [f"{failed} failed"] * bool(failed) + [f"{kept} skipped, their outputs there already"] * bool(kept)
        print(f"{' and '.join(parts)}, of {len(pairs)} image(s)", file=sys.stderr)
        return 1
    return 0


def _check_output_file(path: Path, option: str) -> None:
    """Fails before the work, not after it: ``path`` must be a file name in an existing folder."""
    if path.is_dir():
        raise CliError(f"{option} {path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise CliError(f"{option} {path}: the folder {path.parent} does not exist")


def _upscale_on_cluster(args: argparse.Namespace) -> int:
    """``espcn-fast upscale --cluster``: the same outputs from a pool of Ray workers; outputs already
    there are complete (written whole or not at all) and are not redone, so a rerun resumes."""
    from .cluster import ClusterError, collect, upscale_images

    device = _default_device(args.device)
    _load_reference(args.scale, args.weights)  # bad weights: one line here, not in every worker
    try:
        pairs = [pair for item in args.inputs for pair in collect(item, args.output)]
        if len({dst for _, dst in pairs}) != len(pairs):
            raise CliError("two inputs would write the same output name; upscale them separately")
        summary = upscale_images(
            pairs,
            args.output,
            args.scale,
            cluster=args.cluster,
            weights=args.weights,
            device=device,
            backend=args.backend,
            precision=args.precision,
            overwrite=args.overwrite,
            workers=args.workers,
            batch=args.batch,
            max_memory=args.max_memory,
            progress=not args.quiet,
        )
    except ClusterError as exc:
        raise CliError(str(exc)) from None
    for _src, reason in summary.failed:
        print(f"failed: {reason}", file=sys.stderr)
    print(summary.line(), file=sys.stderr if summary.failed else sys.stdout)
    return 0 if summary.ok else 1


def cmd_video(args: argparse.Namespace) -> int:
    """``espcn-fast video``: one video file through the pipeline of :mod:`espcn_fast.video`."""
    from .video import VideoError, upscale_video

    try:
        import av  # noqa: F401
    except ImportError:
        raise CliError("espcn-fast video needs PyAV: pip install 'espcn_fast[video]' (or pip install av)") from None

    if args.cluster is not None:
        return _video_on_cluster(args)
    device = _default_device(args.device)
    model = _load_model(args.scale, args.weights, device, args.backend, args.precision)
    try:
        result = upscale_video(
            args.input,
            args.output,
            model,
            args.scale,
            device,
            codec=args.codec,
            crf=args.crf,
            preset=args.preset,
            batch=args.batch,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
    except VideoError as exc:
        raise CliError(str(exc)) from None
    return _report_video(args, result)


def _video_on_cluster(args: argparse.Namespace) -> int:
    """``espcn-fast video --cluster``: the video cut at keyframes into chunks, each upscaled by a Ray task,
    joined by stream copy; chunks done are kept for a rerun until the output is in place."""
    from .cluster import ClusterError
    from .cluster_video import ChunkFailures, upscale_video_on_cluster
    from .video import VideoError

    device = _default_device(args.device)
    _load_model(args.scale, args.weights, device, args.backend, args.precision)  # bad weights: one line, here
    try:
        result = upscale_video_on_cluster(
            args.input,
            args.output,
            args.scale,
            chunk_seconds=args.chunk_seconds,
            cluster=args.cluster,
            weights=args.weights,
            device=device,
            backend=args.backend,
            precision=args.precision,
            codec=args.codec,
            crf=args.crf,
            preset=args.preset,
            batch=args.batch,
            overwrite=args.overwrite,
            workers=args.workers,
            progress=not args.quiet,
        )
    except ChunkFailures as exc:
        for line in exc.failures:
            print(f"failed: {line}", file=sys.stderr)
        print(f"espcn-fast: error: {exc}", file=sys.stderr)
        return 1
    except (ClusterError, VideoError) as exc:
        raise CliError(str(exc)) from None
    return _report_video(args, result)


def _report_video(args: argparse.Namespace, result: VideoResult) -> int:
    """The warnings, where the input fell short, and the frames done; the exit status."""
    for warning in result.warnings:
        print(f"espcn-fast: warning: {warning}", file=sys.stderr)
    if not result.complete:
        print(
            f"espcn-fast: error: {args.input} is corrupt: {result.stopped_at}; "
            f"kept the {result.frames} frame(s) done in {result.output}",
            file=sys.stderr,
        )
        return 1
    if not args.quiet:
        timings = result.timings
        steps = "".join(f", {k} {timings[k]:.2f} s" for k in ("plan", "chunks", "join") if k in timings)
        print(
            f"{args.input} -> {result.output}: {result.frames} frames in {result.seconds:.1f} s "
            f"({result.fps:.1f} fps; the network alone {timings['network']:.1f} s{steps})"
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``espcn-fast export``: the network as an ONNX or TorchScript file for other tools."""
    from .export import export_model, format_of

    fmt = format_of(args.output, args.format)
    _check_output_file(args.output, "-o")
    problem = existing_output(args.output, args.overwrite)
    if problem:
        raise CliError(problem)
    export_model(_load_reference(args.scale, args.weights), args.output, fmt, opset=args.opset, clamp=not args.no_clamp)
    if not args.quiet:
        print(
            f"wrote {args.output}: ESPCN x{args.scale} as {fmt}"
            + (f" (opset {args.opset})" if fmt == "onnx" else "")
            + "; input x, output y: (N, 1, H, W) float32 Y on [0, 1]"
        )
    return 0


def format_table(scores: dict[int, list[SetScore]]) -> str:
    """Markdown table of PSNR/SSIM beside the published figures."""
    lines = [
        "| scale | set | PSNR (dB) | SSIM | paper PSNR | ESPCN-PyTorch PSNR |",
        "|---|---|---|---|---|---|",
    ]
    for scale, sets in scores.items():
        for s in sets:
            key = (s.name, scale)
            paper = published.PAPER.get(key)
            if paper is None and key in published.PAPER_IMAGENET:  # not a T91 figure: said so
                paper = f"{published.PAPER_IMAGENET[key]} (ImageNet-trained)"
            theirs = published.ESPCN_PYTORCH.get(key)
            lines.append(
                f"| x{scale} | {s.name} | {s.psnr:.2f} | {s.ssim:.4f} | "
                f"{paper if paper else '-'} | {theirs if theirs else '-'} |"
            )
    return "\n".join(lines)


def cmd_eval(args: argparse.Namespace) -> int:
    """``espcn-fast eval``: PSNR/SSIM on the evaluation sets, beside the published figures."""
    if args.json:
        _check_output_file(args.json, "--json")
    device = _default_device(args.device)
    scores: dict[int, list[SetScore]] = {}
    for scale in args.scale:
        model = _load_model(scale, args.weights, device, args.backend, args.precision)
        scores[scale] = evaluate_sets(model, scale, args.sets, args.data, progress=not args.quiet)
    print(format_table(scores))
    if args.json:
        payload = {
            f"x{scale}": {
                s.name: {
                    "psnr": s.psnr,
                    "ssim": s.ssim,
                    "images": {i.name: {"psnr": i.psnr, "ssim": i.ssim} for i in s.images},
                }
                for s in sets
            }
            for scale, sets in scores.items()
        }
        try:
            with replacing(args.json) as tmp:
                tmp.write_text(json.dumps(payload, indent=2) + "\n")
        except OSError as exc:  # the earlier file, if any, is left as it was
            raise CliError(f"cannot write {args.json}: {exc.strerror or exc}") from None
        print(f"wrote {args.json}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Upscale a sample image at x3, then print the Set5/Set14 table at x3."""
    device = _default_device(args.device)
    model = _load_model(3, None, device)
    try:
        data = find_data_dir(args.data)
        sample = data / "Set5" / "butterfly.png"
        image = read_image(sample)
    except (FileNotFoundError, ImageReadError):
        data = None
        try:
            from skimage import data as skdata  # a bundled image: no download
        except ImportError:
            raise CliError(
                "no data folder (../shared/data or --data DIR) and no scikit-image for a sample "
                "image: pass --data DIR or pip install scikit-image"
            ) from None

        sample = Path("skimage.data.astronaut")
        image = torch.from_numpy(skdata.astronaut()).permute(2, 0, 1).contiguous()
    args.output.mkdir(parents=True, exist_ok=True)
    dst = args.output / "demo_x3.png"
    write_image(upscale_image(image, model, 3, device).cpu(), dst)
    print(f"upscaled {sample} ({image.shape[2]}x{image.shape[1]}) x3 -> {dst}")
    if data is None:
        print("no data folder (../shared/data): skipping the Set5/Set14 table")
        return 0
    print(format_table({3: evaluate_sets(model, 3, ("Set5", "Set14"), data)}))
    return 0


def _add_precision(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="arithmetic: fp32 (default); GPU: tf32/fp16/bf16 on the tensor cores; CPU: bf16 (AVX512-BF16) "
        "or int8 (AVX512-VNNI or AVX-VNNI, with the int8 weights unless --weights is given)",
    )


def _positive(option: str):
    """An argparse type: a whole number >= 1, or a one-line error naming ``option``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} takes a whole number, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{option} must be at least 1, got {value}")
        return value

    return parse


def _seconds(text: str) -> float:
    """An argparse type for ``--chunk-seconds``: a number of seconds above 0, or a one-line error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--chunk-seconds takes a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"--chunk-seconds must be more than 0, got {text}")
    return value


def _memory_size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _tile_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tile takes a number of LR pixels, got {text!r}") from None
    if value < OOM_LAST_TILE:  # smaller tiles would be mostly halo
        raise argparse.ArgumentTypeError(f"--tile must be at least {OOM_LAST_TILE} LR pixels, got {value}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors on one line (exit status 2), as every other error of the
    command; the usage is one ``--help`` away (sub-commands inherit it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``espcn-fast`` command line: one sub-command per job."""
    parser = OneLineParser(
        prog="espcn-fast",
        description="Real-time super-resolution with ESPCN (Shi et al. 2016): upscale images "
        "and reproduce the paper's PSNR/SSIM table.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    up = sub.add_parser(
        "upscale",
        help="super-resolve images or folders of images",
        description="Super-resolve Y with ESPCN, Cb/Cr by bicubic; PNG out.",
    )
    up.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE", help="image files or folders")
    up.add_argument(
        "-o", "--output", type=Path, required=True, help="output folder, or an output file for a single image"
    )
    up.add_argument("--scale", type=int, default=3, choices=(2, 3, 4), help="upscaling factor (default 3)")
    up.add_argument("--weights", type=Path, help="weights file (default: the shipped weights)")
    up.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    up.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="kernels to run (default auto: the fastest here; torch = the reference layers)",
    )
    _add_precision(up)
    up.add_argument(
        "--tile",
        type=_tile_size,
        metavar="N",
        help="process in N x N LR tiles (4-pixel halo; identical pixels, bounded memory); "
        "on a GPU an image that does not fit is tiled anyway",
    )
    up.add_argument(
        "--max-memory",
        type=_memory_size,
        metavar="SIZE",
        help="host memory an image may use, e.g. 4G (default: half of what is available); "
        "larger images are tiled by themselves, and one whose output alone is larger is skipped",
    )
    up.add_argument("--overwrite", action="store_true", help="replace existing output files")
    up.add_argument(
        "--cluster",
        metavar="auto|local|ADDRESS",
        help="run on a Ray cluster: auto joins $RAY_ADDRESS's or starts one here, local starts one "
        "here, or a cluster's address; inputs may also be a glob pattern or a text file of paths; "
        "outputs already there are kept (a rerun resumes)",
    )
    up.add_argument(
        "--workers",
        type=_positive("--workers"),
        help="with --cluster: how many workers (default: one per GPU, or one per 2 CPUs)",
    )
    up.add_argument(
        "--batch",
        type=_positive("--batch"),
        default=4,
        help="with --cluster: images sent to a worker at a time (default 4)",
    )
    up.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    up.set_defaults(func=cmd_upscale)

    vid = sub.add_parser(
        "video",
        help="super-resolve a video (Y by ESPCN, chroma bicubic; audio copied)",
        description="Decode, super-resolve Y with ESPCN and Cb/Cr by bicubic, encode; the input's "
        "timestamps kept and its audio copied. Decoding, the network and encoding overlap.",
    )
    vid.add_argument("input", type=Path, help="video file")
    vid.add_argument("-o", "--output", type=Path, required=True, help="output video file (.mp4, .mkv, ...)")
    vid.add_argument("--scale", type=int, default=3, choices=(2, 3, 4), help="upscaling factor (default 3)")
    vid.add_argument("--weights", type=Path, help="weights file (default: the shipped weights)")
    vid.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    vid.add_argument("--backend", choices=BACKENDS, default="auto", help="kernels to run (default auto)")
    _add_precision(vid)
    vid.add_argument("--codec", default="libx264", help="video encoder (default libx264, yuv420p)")
    vid.add_argument("--crf", type=int, default=18, help="encoder quality, lower is better (default 18)")
    vid.add_argument("--preset", default="veryfast", help="x264/x265 preset (default veryfast)")
    vid.add_argument("--batch", type=int, default=4, help="frames per network call (default 4)")
    vid.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    vid.add_argument(
        "--cluster",
        metavar="auto|local|ADDRESS",
        help="run on a Ray cluster (as upscale --cluster): the video cut at keyframes into chunks, each "
        "upscaled by a task, joined by stream copy; a rerun keeps the chunks done",
    )
    vid.add_argument(
        "--workers",
        type=_positive("--workers"),
        help="with --cluster: chunks run at a time (default: one per GPU, or one per 2 CPUs)",
    )
    vid.add_argument(
        "--chunk-seconds",
        type=_seconds,
        default=10.0,
        metavar="N",
        help="with --cluster: chunk length in seconds, cut at the next keyframe (default 10)",
    )
    vid.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    vid.set_defaults(func=cmd_video)

    ev = sub.add_parser(
        "eval",
        help="PSNR/SSIM on Set5/Set14 with the standard LR inputs",
        description="The SR papers' protocol: Y channel, scale-pixel border shaved.",
    )
    ev.add_argument("--scale", type=int, nargs="+", default=[3], choices=(2, 3, 4))
    ev.add_argument("--sets", nargs="+", default=["Set5", "Set14"])
    ev.add_argument("--data", type=Path, help="data folder (default: $ESPCN_FAST_DATA or ../shared/data)")
    ev.add_argument("--weights", type=Path, help="weights file (default: the shipped weights)")
    ev.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    ev.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    ev.add_argument("--backend", choices=BACKENDS, default="auto", help="kernels to run (default auto)")
    _add_precision(ev)
    ev.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(func=cmd_eval)

    ex = sub.add_parser(
        "export",
        help="write the network as ONNX or TorchScript (FFmpeg, VapourSynth, ...)",
        description="One channel (Y) in and out, batch, height and width free; input x, output y. "
        "See docs/exports.md for FFmpeg and VapourSynth.",
    )
    ex.add_argument("-o", "--output", type=Path, required=True, help="output file (.onnx, .pt)")
    ex.add_argument("--scale", type=int, default=3, choices=(2, 3, 4), help="upscaling factor (default 3)")
    ex.add_argument(
        "--format",
        choices=("onnx", "torchscript"),
        help="file format (default: from the output's suffix: .onnx, or .pt/.pth/.ts)",
    )
    ex.add_argument("--weights", type=Path, help="weights file (default: the shipped weights)")
    ex.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17; 11 at least)")
    ex.add_argument("--no-clamp", action="store_true", help="leave the output unclamped (default: clipped to [0, 1])")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    ex.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    ex.set_defaults(func=cmd_export)

    demo = sub.add_parser("demo", help="upscale a sample image and print the x3 table (make run)")
    demo.add_argument("-o", "--output", type=Path, default=Path("outputs"))
    demo.add_argument("--data", type=Path)
    demo.add_argument("--device")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``espcn-fast`` with ``argv``; returns the exit status (2 for a bad input, printed as one line)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):  # a file name that is not UTF-8 is printed escaped, as on stderr
        sys.stdout.reconfigure(errors="backslashreplace")
    if args.command is None:
        parser.print_help()
        return 0
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread, where signals can't be handled: left as they are
        previous = None
    try:
        return args.func(args)
    except (CliError, WeightsError, ImageReadError, ValueError, TypeError) as exc:
        print(f"espcn-fast: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path the system refused (missing, a folder, no permission, disk full)
        where = f": {exc.filename}" if exc.filename else ""
        print(f"espcn-fast: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except Terminated:
        print("espcn-fast: terminated", file=sys.stderr)
        return 143  # 128 + SIGTERM, as a shell reports a process it stopped
    except KeyboardInterrupt:
        print("espcn-fast: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
