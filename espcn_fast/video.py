"""Super-resolve a video: decoded YUV -> Y through the network, Cb/Cr bicubic -> encoded YUV.

A pipeline of three stages joined by bounded queues, so that decoding,
the network and encoding overlap:

    decode thread:  demux, decode, YUV 4:2:0 planes (audio packets pass along in order)
    caller thread:  batches of Y to the device, FastESPCN, chroma upscaled there, back to the host
    encode thread:  YUV 4:2:0 frames with the input's timestamps -> H.264 (or the codec asked for),
                    audio packets muxed untouched

The Y plane is taken straight from the decoded frame (no RGB round trip):
video Y is the same limited-range luma the network was trained on (MATLAB's
rgb2ycbcr). Other pixel formats (4:2:2, 4:4:4, 10-bit, grey) are converted to
8-bit 4:2:0 first (grey gets neutral chroma), and full-range (JPEG) YUV to
limited range; the output keeps the input's colour tags (matrix, primaries,
transfer) and is tagged limited range when it has any (libx264 writes no
range for an untagged input; players read that as limited). The output keeps the input's
frame timestamps (variable frame rate included) and time base; a stream
without them (raw .h264) is timed by its frame rate. A frame with a
rotation tag is turned upright before it is upscaled, and the output carries
no tag. yuv420p needs even sizes: an odd HR width or height loses its last
column or row. A picture size that changes part-way is upscaled at its own
size and fitted into the output's (the first frame's) with its aspect ratio
kept, on black; timestamps that go back (joined files whose times start again)
are shifted to follow on; both with a warning naming the frame.

Safety: the input is never written; the output is written through
:func:`espcn_fast.atomic_write.replacing` (a temporary file in the target folder,
renamed when complete). If the input turns out to be corrupt part-way (a decoding
error, a packet the demuxer flags as damaged, fewer frames or a shorter time
than its container declares), the frames done so far are kept (the output is
finalised), and the result says where the input fell short.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .atomic_write import existing_output, replacing
from .model import SuperResolver
from .quantize import round_255, to_uint8_
from .validation import check_model_scale

_END = object()  # the last item on a queue


class VideoError(Exception):
    """A video that cannot be read or written; the message is one line."""


@dataclass
class VideoResult:
    """What :func:`upscale_video` did: frames written, seconds, and whether the input was read to its end."""

    output: Path
    frames: int
    seconds: float
    complete: bool = True
    stopped_at: str | None = None  # where and why the input fell short (one line)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # one line each: size changes, timestamps shifted

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Frame:
    pts: int | None
    y: np.ndarray  # (H, W) uint8
    u: np.ndarray  # (ceil(H/2), ceil(W/2)) uint8
    v: np.ndarray


def _plane(frame, index: int) -> np.ndarray:
    """One plane of a decoded frame as (height, width) uint8 (line padding dropped)."""
    plane = frame.planes[index]
    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]


def _full_range(frame) -> bool:
    """Whether the frame's YUV uses the full 0-255 range (JPEG range, as phones and screen recorders write)."""
    return frame.color_range == 2 or frame.format.name.startswith("yuvj")  # 2: AVCOL_RANGE_JPEG


def _yuv420(frame) -> _Frame:
    """The frame's 8-bit limited-range 4:2:0 planes, turned upright if it carries a rotation."""
    if _full_range(frame):
        # The network learnt limited-range luma, and the output is limited range
        # (_add_video_stream tags it so): full range is scaled to 16-235 / 16-240 here.
        frame = frame.reformat(format="yuv420p", src_color_range="JPEG", dst_color_range="MPEG")
    elif frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    planes = [_plane(frame, i) for i in range(3)]
    turns = (round(getattr(frame, "rotation", 0) or 0) // 90) % 4
    if turns:
        planes = [np.rot90(p, k=turns) for p in planes]  # rotation is counterclockwise, as np.rot90
    return _Frame(frame.pts, *(np.ascontiguousarray(p) for p in planes))


def _video_frame(y: np.ndarray, u: np.ndarray, v: np.ndarray):
    """A yuv420p ``av.VideoFrame`` holding the planes (one copy each, into FFmpeg's buffers)."""
    import av

    frame = av.VideoFrame(y.shape[1], y.shape[0], "yuv420p")
    for plane, pixels in zip(frame.planes, (y, u, v)):
        np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width] = pixels
    return frame


def _frame_rate(in_video, timestamps: bool = True) -> Fraction:
    """The input's frame rate (FFmpeg's guess where the container gives none; 25 where it can't guess).

    ``timestamps=False``, a stream without them (raw .h264): FFmpeg's guess
    first, which reads the codec's own timing; the raw demuxer's average rate
    is a default of 25 whatever the stream says.
    """
    first, second = (in_video.average_rate, in_video.guessed_rate)[:: 1 if timestamps else -1]
    return first or second or Fraction(25)


def _add_video_stream(output, in_video, codec: str, size: tuple[int, int], crf: int | None, preset: str | None,
                      timestamps: bool = True):
    """The output's video stream: ``size`` (height, width) limited-range yuv420p, at the input's rate and
    time base, with its colour tags (matrix, primaries, transfer)."""
    stream = output.add_stream(codec, rate=_frame_rate(in_video, timestamps))
    stream.height, stream.width = size
    stream.pix_fmt = "yuv420p"
    # The pixels keep the input's matrix, primaries and transfer (only the range
    # is converted, in _yuv420): without the tags a player would guess them.
    ctx, in_ctx = stream.codec_context, in_video.codec_context
    ctx.colorspace, ctx.color_primaries, ctx.color_trc = in_ctx.colorspace, in_ctx.color_primaries, in_ctx.color_trc
    if in_ctx.colorspace == 0:  # RGB input (AVCOL_SPC_RGB, invalid for 4:2:0): swscale made BT.601 YUV of it
        ctx.colorspace = 6  # AVCOL_SPC_SMPTE170M, the BT.601 matrix
    ctx.color_range = 1  # AVCOL_RANGE_MPEG (limited), what _yuv420 makes
    # The encoder counts in the input's time base, so that every timestamp
    # (variable frame rate included) survives unrounded.
    stream.time_base = stream.codec_context.time_base = in_video.time_base
    options = {"crf": str(crf)} if crf is not None else {}
    if preset is not None and codec in ("libx264", "libx265"):
        options["preset"] = preset  # x264's default, medium, costs more than the network
    stream.options = options
    return stream


def _check_paths(src: Path, dst: Path, overwrite: bool) -> None:
    if not src.is_file():
        raise VideoError(f"input not found: {src}")
    if dst.exists() and dst.resolve() == src.resolve():
        raise VideoError(f"refusing to overwrite the input {src}; choose another -o")
    if dst.is_dir():
        raise VideoError(f"cannot write {dst}: it is a folder; name the output file")
    if existing_output(dst, overwrite):
        raise VideoError(existing_output(dst, overwrite))
    if not dst.parent.is_dir():
        raise VideoError(f"cannot write {dst}: the folder {dst.parent} does not exist")
    if not os.access(dst.parent, os.W_OK):
        raise VideoError(f"cannot write {dst}: no permission to write in {dst.parent}")


def _open_input(src: Path):
    import av

    try:
        container = av.open(str(src))
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise VideoError(f"{src} is not a video ({exc})") from None
    if any(name == "image2" or name.endswith("_pipe") for name in container.format.name.split(",")):
        container.close()  # FFmpeg reads a photo as a one-frame video
        raise VideoError(f"{src} is a still image, not a video; use espcn-fast upscale for images")
    if not container.streams.video:
        container.close()
        raise VideoError(f"{src} has no video stream")
    return container


def _upscale_chroma(c: torch.Tensor, scale: int, size: tuple[int, int]) -> torch.Tensor:
    """(N, 2, h, w) uint8 chroma -> bicubic x scale, cropped to ``size``, uint8.

    torch's bicubic (a = -0.75), not ``resize.imresize``: MATLAB's resize in float
    costs more per frame than the rest of the CPU pipeline, and
    chroma never enters the metrics. On the CPU torch's uint8 kernel (4x faster
    than float); on a GPU in float, rounded as everything else (``quantize``).
    """
    full = (c.shape[-2] * scale, c.shape[-1] * scale)
    if c.device.type == "cpu":
        up = F.interpolate(c, size=full, mode="bicubic", align_corners=False, antialias=False)
    else:
        up = round_255(F.interpolate(c.float(), size=full, mode="bicubic", align_corners=False))
    return up[..., : size[0], : size[1]].to(torch.uint8)


def _even(n: int) -> int:
    return n - n % 2


def _letterbox(y: np.ndarray, u: np.ndarray, v: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """4:2:0 planes of another size fitted into ``size`` (height, width): scaled with the aspect ratio
    kept (bilinear, antialiased), centred on limited-range black."""
    height, width = size
    f = min(height / y.shape[0], width / y.shape[1])
    h = min(height, max(2, _even(round(y.shape[0] * f))))
    w = min(width, max(2, _even(round(y.shape[1] * f))))
    top, left = _even((height - h) // 2), _even((width - w) // 2)  # even: the chroma lines up
    fitted = []
    for plane, black, sub in ((y, 16, 1), (u, 128, 2), (v, 128, 2)):
        canvas = np.full((height // sub, width // sub), black, np.uint8)
        scaled = F.interpolate(torch.from_numpy(plane)[None, None].float(), size=(h // sub, w // sub),
                               mode="bilinear", align_corners=False, antialias=True)
        canvas[top // sub:(top + h) // sub, left // sub:(left + w) // sub] = round_255(scaled)[0, 0].to(torch.uint8)
        fitted.append(canvas)
    return tuple(fitted)


class _Timeline:
    """Timestamps that go back (files joined end to end whose times start again) made to follow on.

    At each restart every stream is shifted by the same time (the first stream
    to meet it decides: the end of all that came before), so that the sound
    stays with the picture; a stream still behind after that shift is moved
    on by itself.
    """

    def __init__(self) -> None:
        self.shifts = [0.0]  # seconds, one per restart met
        self.restarts: dict[int, int] = {}  # stream -> restarts it has met
        self.extra: dict[int, int] = {}  # stream -> its own shift, in its time base
        self.last: dict[int, int] = {}  # stream -> its last timestamp given
        self.end = 0.0  # seconds: where the streams have reached

    def _offset(self, stream: int, time_base: Fraction) -> int:
        return round(self.shifts[self.restarts.get(stream, 0)] / time_base) + self.extra.get(stream, 0)

    def place(self, stream: int, ts: int, duration: int, time_base: Fraction, step: int) -> tuple[int, float | None]:
        """``ts`` (in ``time_base``) made later than the stream's last, and how far back it went (seconds;
        None when it did not); ``step`` moves a stream on by itself."""
        shifted = ts + self._offset(stream, time_base)
        back = None
        if stream in self.last and shifted <= self.last[stream]:
            back = float((self.last[stream] - shifted) * time_base)
            n = self.restarts[stream] = self.restarts.get(stream, 0) + 1
            if n == len(self.shifts):  # the first stream to meet this restart
                self.shifts.append(self.end - float(ts * time_base))
            self.extra[stream] = 0
            shifted = ts + self._offset(stream, time_base)
            if shifted <= self.last[stream]:
                self.extra[stream] = self.last[stream] + step - shifted
                shifted = self.last[stream] + step
        self.last[stream] = shifted
        self.end = max(self.end, float((shifted + duration) * time_base))
        return shifted, back


# Container formats whose header states the length of the whole file (a cut file keeps the claim);
# others (MPEG-TS, raw streams) have it estimated from the data there is.
_DECLARED_DURATION = {"matroska", "webm", "mov", "mp4", "avi"}


def _shortfall(container, in_video, frames: int, end: float, discarded: int = 0) -> str | None:
    """Why ``frames`` decoded up to ``end`` seconds fall clearly short of what the container
    declares (its frame count, else its duration), or None. ``discarded``: packets the demuxer
    marked as outside the edit list (an MP4 trimmed without re-encoding), counted in the declared
    frames but never shown."""
    declared = in_video.frames - discarded
    if declared > 0 and declared - frames > max(2, declared // 100):
        return f"it ends at frame {frames} (t = {end:.2f} s) of the {declared} frames its container declares"
    if declared <= 0 and container.duration and _DECLARED_DURATION & set(container.format.name.split(",")):
        length = (container.duration + (container.start_time or 0)) / 1_000_000  # AV_TIME_BASE units
        if length - end > max(0.5, 0.02 * length):
            return f"it ends at {end:.2f} s of the {length:.2f} s its container declares"
    return None


def _drain(items: queue.Queue, producer: threading.Thread) -> None:
    """Take what ``producer`` puts on ``items`` until it has ended, so that it can't block on a full queue.

    Never waits for an ``_END`` already taken: it stops when the producer's
    thread has finished and the queue is empty.
    """
    while producer.is_alive() or not items.empty():
        try:
            if items.get(timeout=0.05) is _END:
                return
        except queue.Empty:
            pass


class _Network:
    """The middle stage: batches of decoded frames -> upscaled YUV 4:2:0 planes (host numpy).

    ``submit`` queues a batch and ``finish`` waits for it. On a GPU the copies
    in and out (pinned host memory) and the network run on a side stream, and
    the caller submits batch i+1 before finishing batch i, so the transfers and
    the host's work on one batch overlap the network on the next.
    """

    def __init__(self, model: SuperResolver, scale: int, device: torch.device) -> None:
        self.model, self.scale, self.device = model, scale, device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.seconds = 0.0

    def _compute(self, y: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = y.to(self.device, non_blocking=True)
        c = c.to(self.device, non_blocking=True)
        sr = self.model(y.float().div_(255.0))
        hr_h, hr_w = _even(sr.shape[-2]), _even(sr.shape[-1])
        y_hr = to_uint8_(sr[:, 0, :hr_h, :hr_w])
        return y_hr, _upscale_chroma(c, self.scale, (hr_h // 2, hr_w // 2))

    @torch.no_grad()
    def submit(self, frames: list[_Frame]) -> tuple:
        start = time.perf_counter()
        y = torch.from_numpy(np.stack([f.y for f in frames]))[:, None]
        c = torch.from_numpy(np.stack([np.stack([f.u, f.v]) for f in frames]))
        if self.stream is None:
            out = self._compute(y, c)
            self.seconds += time.perf_counter() - start
            return frames, out, None, ()
        y, c = y.pin_memory(), c.pin_memory()
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            y_dev, c_dev = self._compute(y, c)
            host = tuple(torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in (y_dev, c_dev))
            for h, d in zip(host, (y_dev, c_dev)):
                h.copy_(d, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self.stream)
        self.seconds += time.perf_counter() - start
        # The inputs and device results stay referenced until `done` has passed.
        return frames, host, done, (y, c, y_dev, c_dev)

    def finish(self, handle: tuple) -> list[tuple]:
        frames, (y_hr, c_hr), done, _ = handle
        start = time.perf_counter()
        if done is not None:
            done.synchronize()
        y_hr, c_hr = y_hr.numpy(), c_hr.numpy()
        self.seconds += time.perf_counter() - start
        return [(f.pts, y_hr[i], c_hr[i, 0], c_hr[i, 1]) for i, f in enumerate(frames)]


def upscale_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    model: SuperResolver,
    scale: int,
    device: torch.device | str = "cpu",
    codec: str = "libx264",
    crf: int | None = 18,
    preset: str | None = "veryfast",
    batch: int = 4,
    overwrite: bool = False,
    progress: bool = False,
    queue_size: int = 16,
) -> VideoResult:
    """Super-resolve every frame of ``src`` into ``dst`` (see the module's docstring).

    ``model`` maps LR Y ``(N, 1, H, W)`` floats on [0, 1] on ``device`` to HR Y;
    ``batch`` frames go through it at a time (4 by default: on 2 CPU cores 4-8%
    faster than 1, and a GPU needs batches to be busy). ``crf`` and ``preset``
    go to x264/x265 (``veryfast`` by default: real-time at 1080p on a few
    cores). Raises :class:`VideoError` for a missing or unreadable input, no
    video stream, a still image, no decodable frame, or an output that can't be
    written; returns with ``complete=False`` (and ``stopped_at``) when the input
    turns out corrupt part-way, and with ``warnings`` for a size change or
    timestamps that go back.
    """
    src, dst = Path(src), Path(dst)
    _check_paths(src, dst, overwrite)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    check_model_scale(model, scale, "upscale_video")
    network = _Network(model, scale, torch.device(device))
    container = _open_input(src)
    try:
        # The container's suffix ends the temporary name too: FFmpeg picks the muxer by it.
        with replacing(dst, suffix=dst.suffix) as tmp:
            return _run(container, src, tmp, dst, network, scale, codec, crf, preset, batch, progress, queue_size)
    except OSError as exc:  # the rename (what went wrong inside is a VideoError already)
        raise VideoError(f"cannot write {dst}: {exc.strerror or exc}") from None
    finally:
        container.close()


def _run(container, src: Path, tmp: Path, dst: Path, network: _Network, scale: int, codec: str, crf: int | None,
         preset: str | None, batch: int, progress: bool, queue_size: int) -> VideoResult:
    """The pipeline of :func:`upscale_video` from the open input ``container`` into ``tmp``; raises
    (so that ``tmp`` is removed) unless at least one frame was written."""
    import av

    in_video = container.streams.video[0]
    in_video.thread_type = "AUTO"
    in_audio = list(container.streams.audio)
    try:
        output = av.open(str(tmp), "w")
    except (av.FFmpegError, ValueError) as exc:
        raise VideoError(f"cannot write {dst}: {exc}") from None

    decoded: queue.Queue = queue.Queue(queue_size)
    encoded_in: queue.Queue = queue.Queue(queue_size)
    stop = threading.Event()
    # "timestamps": False once the decoder meets a frame without one (set before that frame is queued,
    # so the encoder, which makes its stream on the first frame, sees it).
    state: dict = {"problems": [], "error": None, "frames": 0, "timestamps": True, "warnings": [],
                   "decoded": 0, "end": 0.0, "discarded": 0, "packets": 0, "damaged": None}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=in_video.frames or None, unit="frame", desc=f"video x{scale}")

    def decode() -> None:
        index, packets, last_time = 0, 0, 0.0
        anchor = (0, 0)  # (index, pts) of the last frame with a timestamp
        size = None  # the picture size of the frames now coming
        timeline = _Timeline()
        tick = max(1, round(1 / (_frame_rate(in_video) * in_video.time_base)))  # a frame, in time-base units
        try:
            for packet in container.demux(in_video, *in_audio):
                if stop.is_set():
                    break
                if packet.pts is not None and packet.time_base is not None:
                    end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                    state["end"] = max(state["end"], end)
                if packet.is_corrupt and state["damaged"] is None:  # a cut file: the last packet is partial
                    where = float(packet.pts * packet.time_base) if packet.pts is not None else last_time
                    state["damaged"] = (packet.stream.type, f"damaged data at frame {packets} (t = {where:.2f} s): "
                                        "the file is cut short or corrupt")
                if packet.stream.type == "audio":
                    if packet.dts is not None:
                        shift = timeline.place(packet.stream.index, packet.dts, packet.duration or 0,
                                               packet.time_base, max(packet.duration or 0, 1))[0] - packet.dts
                        packet.dts += shift
                        if packet.pts is not None:
                            packet.pts += shift
                        decoded.put(("audio", packet))
                    continue
                packets += packet.size > 0
                state["discarded"] += packet.is_discard
                for frame in packet.decode():
                    planes = _yuv420(frame)
                    when = frame.time if frame.time is not None else last_time
                    if size is not None and planes.y.shape != size:
                        h, w = planes.y.shape
                        out_h, out_w = state["size"]
                        state["warnings"].append(
                            f"frame {index} (t = {when:.2f} s): the picture changes from {size[1]}x{size[0]} to "
                            f"{w}x{h}; upscaled at its size and fitted into the output's {out_w}x{out_h}, "
                            "the aspect ratio kept (black bars)")
                    if size is None:
                        state["size"] = (_even(planes.y.shape[0] * scale), _even(planes.y.shape[1] * scale))
                    size = planes.y.shape
                    if planes.pts is None:  # a raw stream (.h264) has none: count frames at the stream's rate
                        state["timestamps"] = False
                        step = 1 / (_frame_rate(in_video, timestamps=False) * in_video.time_base)  # a frame, in time-base units
                        planes.pts = anchor[1] + round((index - anchor[0]) * step)
                    else:
                        planes.pts, back = timeline.place(in_video.index, planes.pts, tick, in_video.time_base, tick)
                        if back is not None:
                            state["warnings"].append(
                                f"frame {index} (t = {when:.2f} s): the timestamps go back by {back:.2f} s; "
                                "the frames from here are timed to follow on")
                        anchor = (index, planes.pts)
                    decoded.put(("video", planes))
                    index += 1
                    last_time = when
        except av.FFmpegError as exc:  # corrupt part-way: keep what is done
            state["problems"].insert(0, f"decoding stopped after frame {index} (t = {last_time:.2f} s): {exc}")
        except Exception as exc:  # noqa: BLE001  (raised by the caller)
            state["error"] = exc
        finally:
            state["decoded"], state["packets"] = index, packets
            decoded.put(_END)

    def encode() -> None:
        streams: dict = {}
        early_audio: list = []  # audio before the first frame: the streams exist only then
        ended = False  # _END taken: the caller puts no other
        try:
            for kind, payload in iter(encoded_in.get, _END):
                if kind == "audio":
                    if "video" not in streams:
                        early_audio.append(payload)
                        continue
                    payload.stream = streams[payload.stream.index]
                    output.mux(payload)
                    continue
                pts, y, u, v = payload
                if "video" not in streams:
                    streams["video"] = _add_video_stream(output, in_video, codec, y.shape, crf, preset,
                                                         state["timestamps"])
                    streams["size"] = y.shape
                    for a in in_audio:
                        streams[a.index] = output.add_stream_from_template(a)
                    for packet in early_audio:
                        packet.stream = streams[packet.stream.index]
                        output.mux(packet)
                if y.shape != streams["size"]:  # the input changed size part-way
                    y, u, v = _letterbox(y, u, v, streams["size"])
                frame = _video_frame(y, u, v)
                frame.pts, frame.time_base = pts, in_video.time_base
                output.mux(streams["video"].encode(frame))
                state["frames"] += 1
                if bar is not None:
                    bar.update(1)
            ended = True
            if "video" in streams:
                output.mux(streams["video"].encode(None))
        except Exception as exc:  # noqa: BLE001
            state["error"] = state["error"] or exc
            stop.set()
            if not ended:
                for _ in iter(encoded_in.get, _END):  # keep the network stage from blocking
                    pass

    start = time.perf_counter()
    decoder = threading.Thread(target=decode, name="espcn-decode", daemon=True)
    encoder = threading.Thread(target=encode, name="espcn-encode", daemon=True)
    decoder.start()
    encoder.start()
    try:
        pending: list = []  # frames and audio packets in input order, up to `batch` frames
        in_flight: list = []  # (network handle or None, items) submitted and not yet handed on

        def hand_on(handle, items: list) -> None:
            done = iter(network.finish(handle)) if handle is not None else iter(())
            for kind, p in items:
                encoded_in.put(("video", next(done)) if kind == "video" else (kind, p))

        def flush() -> None:
            frames = [p for kind, p in pending if kind == "video"]
            in_flight.append((network.submit(frames) if frames else None, list(pending)))
            pending.clear()
            while len(in_flight) > 1:  # one batch in flight while the next is submitted
                hand_on(*in_flight.pop(0))

        shape = None  # of the frames pending: a batch holds frames of one size
        for item in iter(decoded.get, _END):
            if item[0] == "video":
                if shape is not None and item[1].y.shape != shape:
                    flush()
                shape = item[1].y.shape
            pending.append(item)
            if sum(kind == "video" for kind, _ in pending) >= batch:
                flush()
        flush()
        while in_flight:
            hand_on(*in_flight.pop(0))
    except BaseException as exc:
        state["error"] = state["error"] or exc
        stop.set()
        # Let the decoder finish; the error may come after _END was taken (the
        # last batches), so don't wait for another.
        _drain(decoded, decoder)
    finally:
        encoded_in.put(_END)
        encoder.join()
        decoder.join()
        if bar is not None:
            bar.close()
        try:
            output.close()
        except Exception as exc:  # noqa: BLE001
            state["error"] = state["error"] or exc
    seconds = time.perf_counter() - start

    error = state["error"]
    problems = state["problems"]
    if state["damaged"] is not None:
        kind, damaged = state["damaged"]
        # A video packet flagged damaged whose frame still came out is no loss: MPEG-TS files joined end to
        # end flag the packet at each join (its continuity counter jumps), every frame decoding whole.
        if kind != "video" or state["decoded"] < state["packets"] - state["discarded"]:
            problems.append(damaged)
    if error is not None or state["frames"] == 0:
        if isinstance(error, (KeyboardInterrupt, VideoError)):
            raise error
        if error is not None:
            raise VideoError(f"{src} -> {dst}: {type(error).__name__}: {error}") from error
        raise VideoError(f"{src}: no video frame could be decoded" + (f" ({problems[0]})" if problems else ""))
    shortfall = _shortfall(container, in_video, state["decoded"], state["end"], state["discarded"])
    if shortfall is not None:
        problems.append(shortfall)
    return VideoResult(dst, state["frames"], seconds, not problems, "; ".join(problems) or None,
                       {"network": network.seconds, "total": seconds}, state["warnings"])
