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
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from .atomic_write import existing_output, replacing
from .model import SuperResolver
from .quantize import round_255, to_uint8_
from .validation import check_model_scale

if TYPE_CHECKING:
    from av.container import InputContainer, OutputContainer
    from av.packet import Packet
    from av.stream import Stream
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream
    from tqdm import tqdm

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


@dataclass(frozen=True)
class FrameRange:
    """A part of a video cut at keyframes: the frames whose timestamps lie in [``start``, ``end``) of the
    video stream's time base (``None``: from the first frame, to the last).

    ``first_index`` is the number of the range's first frame in the whole video (for warnings that name
    frames) and ``first_shape`` the (height, width) of the whole video's first frame, upright, which
    sets the output's size as it does for the whole video.
    """

    start: int | None
    end: int | None
    first_index: int = 0
    first_shape: tuple[int, int] | None = None


def _plane(frame: VideoFrame, index: int) -> np.ndarray:
    """One plane of a decoded frame as (height, width) uint8 (line padding dropped)."""
    plane = frame.planes[index]
    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]


def _full_range(frame: VideoFrame) -> bool:
    """Whether the frame's YUV uses the full 0-255 range (JPEG range, as phones and screen recorders write)."""
    return frame.color_range == 2 or frame.format.name.startswith("yuvj")  # 2: AVCOL_RANGE_JPEG


def _yuv420(frame: VideoFrame) -> _Frame:
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


def _video_frame(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> VideoFrame:
    """A yuv420p ``av.VideoFrame`` holding the planes (one copy each, into FFmpeg's buffers)."""
    import av

    frame = av.VideoFrame(y.shape[1], y.shape[0], "yuv420p")
    for plane, pixels in zip(frame.planes, (y, u, v), strict=True):
        np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width] = pixels
    return frame


def _frame_rate(in_video: VideoStream, timestamps: bool = True) -> Fraction:
    """The input's frame rate (FFmpeg's guess where the container gives none; 25 where it can't guess).

    ``timestamps=False``, a stream without them (raw .h264): FFmpeg's guess
    first, which reads the codec's own timing; the raw demuxer's average rate
    is a default of 25 whatever the stream says.
    """
    first, second = (in_video.average_rate, in_video.guessed_rate)[:: 1 if timestamps else -1]
    return first or second or Fraction(25)


def _add_video_stream(
    output: OutputContainer,
    in_video: VideoStream,
    codec: str,
    size: tuple[int, int],
    crf: int | None,
    preset: str | None,
    timestamps: bool = True,
) -> VideoStream:
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


def _open_input(src: Path) -> InputContainer:
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
        scaled = F.interpolate(
            torch.from_numpy(plane)[None, None].float(),
            size=(h // sub, w // sub),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        canvas[top // sub : (top + h) // sub, left // sub : (left + w) // sub] = round_255(scaled)[0, 0].to(torch.uint8)
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


def _shortfall(
    container: InputContainer, in_video: VideoStream, frames: int, end: float, discarded: int = 0
) -> str | None:
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
            for h, d in zip(host, (y_dev, c_dev), strict=True):
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


@dataclass
class _PipelineState:
    """What the pipeline's threads share; the caller reads it once they have ended.

    The decoder writes where the input stopped (``decoded``, ``packets``,
    ``discarded``, ``end``, ``damaged``, ``problems``), ``size``, ``timestamps``
    and the warnings; the encoder ``frames``; a stage that fails ``error`` and
    ``stop``.
    """

    stop: threading.Event = field(default_factory=threading.Event)  # set on an error: the decoder reads no more
    error: BaseException | None = None
    problems: list[str] = field(default_factory=list)  # where the input fell short, one line each
    warnings: list[str] = field(default_factory=list)  # one line each: size changes, timestamps shifted
    damaged: tuple[str, str] | None = None  # (stream type, message) for the first packet flagged damaged
    frames: int = 0  # frames encoded
    decoded: int = 0  # frames decoded, set when decoding ends
    packets: int = 0  # video packets with data, set when decoding ends
    discarded: int = 0  # packets the demuxer marked as outside the edit list
    end: float = 0.0  # seconds: how far the demuxed packets reach
    size: tuple[int, int] | None = None  # the output's (height, width), from the first frame
    # False once the decoder meets a frame without a timestamp (set before that frame is queued,
    # so the encoder, which makes its stream on the first frame, sees it).
    timestamps: bool = True

    def fail(self, exc: BaseException) -> None:
        """Keep ``exc`` unless an error is kept already: the first is what went wrong."""
        if self.error is None:
            self.error = exc


class _Decoder:
    """The first stage, on its own thread: the input demuxed and decoded into timed 4:2:0 planes, put on
    ``out`` with the audio packets in input order, then ``_END`` whatever happens."""

    def __init__(
        self,
        container: InputContainer,
        in_video: VideoStream,
        in_audio: list[Stream],
        scale: int,
        state: _PipelineState,
        out: queue.Queue,
        frames: FrameRange | None = None,
    ) -> None:
        self.container, self.in_video, self.in_audio, self.scale = container, in_video, in_audio, scale
        self.state, self.out, self.range = state, out, frames
        self.index = frames.first_index if frames else 0  # frames decoded (numbered in the whole video)
        self.packets = 0  # video packets with data
        self.last_time = 0.0  # seconds: the last frame's time
        self.anchor = (0, 0)  # (index, pts) of the last frame with a timestamp
        self.size: tuple[int, ...] | None = None  # the picture size of the frames now coming
        self.timeline = _Timeline()
        self.tick = 1  # a frame, in time-base units: set in run, where an unreadable rate is caught
        if frames is not None and frames.first_shape is not None:  # the output's size is the whole video's
            self.size = frames.first_shape
            self.state.size = (_even(frames.first_shape[0] * scale), _even(frames.first_shape[1] * scale))

    def run(self) -> None:
        """The thread's body. A decoding error ends the input there (the frames so far are kept); any
        other error is left in the state, for the caller to raise."""
        import av

        try:
            self.tick = max(1, round(1 / (_frame_rate(self.in_video) * self.in_video.time_base)))
            if self.range is None:
                self._demux()
            else:
                self._demux_range(self.range)
        except av.FFmpegError as exc:  # corrupt part-way: keep what is done
            where = f"decoding stopped after frame {self.index} (t = {self.last_time:.2f} s)"
            self.state.problems.insert(0, f"{where}: {exc}")
        except Exception as exc:  # noqa: BLE001  (raised by the caller)
            self.state.error = exc
        finally:
            self.state.decoded, self.state.packets = (
                self.index - (self.range.first_index if self.range else 0),
                self.packets,
            )
            self.out.put(_END)

    def _demux(self) -> None:
        """Every packet, until the input ends or another stage has failed."""
        for packet in self.container.demux(self.in_video, *self.in_audio):
            if self.state.stop.is_set():
                break
            self._note(packet)
            if packet.stream.type == "audio":
                self._pass_audio(packet)
                continue
            self.packets += packet.size > 0
            self.state.discarded += packet.is_discard
            for frame in packet.decode():
                self._pass_frame(frame)

    def _demux_range(self, frames: FrameRange) -> None:
        """The video packets from the keyframe at ``frames.start`` up to the next range's keyframe, then
        what the decoder still holds; only the frames inside the range are passed on (no audio)."""
        video = self.in_video
        if frames.start is not None:
            self.container.seek(frames.start, stream=video, backward=True)
        started = frames.start is None
        for packet in self.container.demux(video):
            if self.state.stop.is_set():
                return
            # A seek may land before the keyframe (or, without an index, between keyframes): decoding
            # starts at a keyframe, and what comes before the range is decoded but not passed on.
            started = started or packet.is_keyframe
            if not started:
                continue
            if frames.end is not None and packet.is_keyframe and packet.pts is not None and packet.pts >= frames.end:
                # The next range's keyframe: every frame of this one has been demuxed; what the decoder
                # still holds comes out when it is flushed (at the input's end demux does that).
                for frame in video.codec_context.decode(None):
                    self._pass_frame(frame)
                return
            self._note(packet)
            self.packets += packet.size > 0
            self.state.discarded += packet.is_discard
            for frame in packet.decode():
                self._pass_frame(frame)

    def _outside(self, pts: int | None) -> bool:
        """Whether a frame at ``pts`` lies outside the range decoded (never, for the whole video)."""
        if self.range is None or pts is None:
            return False
        start, end = self.range.start, self.range.end
        return (start is not None and pts < start) or (end is not None and pts >= end)

    def _note(self, packet: Packet) -> None:
        """How far the packets reach, and the first one flagged damaged (a cut file: its last is partial)."""
        if packet.pts is not None and packet.time_base is not None:
            self.state.end = max(self.state.end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
        if packet.is_corrupt and self.state.damaged is None:
            where = float(packet.pts * packet.time_base) if packet.pts is not None else self.last_time
            message = f"damaged data at frame {self.packets} (t = {where:.2f} s): the file is cut short or corrupt"
            self.state.damaged = (packet.stream.type, message)

    def _pass_audio(self, packet: Packet) -> None:
        """An audio packet onto the queue, moved on with the picture where timestamps start again (one
        without a dts has no place in the output: dropped)."""
        if packet.dts is None:
            return
        duration = packet.duration or 0
        placed = self.timeline.place(packet.stream.index, packet.dts, duration, packet.time_base, max(duration, 1))
        shift = placed[0] - packet.dts
        packet.dts += shift
        if packet.pts is not None:
            packet.pts += shift
        self.out.put(("audio", packet))

    def _pass_frame(self, frame: VideoFrame) -> None:
        """A decoded frame onto the queue as timed 4:2:0 planes."""
        if self._outside(frame.pts):
            return
        planes = _yuv420(frame)
        when = frame.time if frame.time is not None else self.last_time
        self._check_size(planes.y.shape, when)
        self._place(planes, when)
        self.out.put(("video", planes))
        self.index += 1
        self.last_time = when

    def _check_size(self, shape: tuple[int, ...], when: float) -> None:
        """The output's size from the first frame; a warning where the picture size changes."""
        if self.size is None:
            self.state.size = (_even(shape[0] * self.scale), _even(shape[1] * self.scale))
        elif shape != self.size:
            (h, w), (out_h, out_w) = shape, self.state.size
            self.state.warnings.append(
                f"frame {self.index} (t = {when:.2f} s): the picture changes from {self.size[1]}x{self.size[0]} "
                f"to {w}x{h}; upscaled at its size and fitted into the output's {out_w}x{out_h}, "
                "the aspect ratio kept (black bars)"
            )
        self.size = shape

    def _place(self, planes: _Frame, when: float) -> None:
        """``planes.pts`` on the output's timeline: counted at the stream's rate where the stream has no
        timestamps, else made to follow on where they go back (with a warning)."""
        if planes.pts is None:  # a raw stream (.h264) has none: count frames at the stream's rate
            self.state.timestamps = False
            step = 1 / (_frame_rate(self.in_video, timestamps=False) * self.in_video.time_base)  # in time-base units
            planes.pts = self.anchor[1] + round((self.index - self.anchor[0]) * step)
            return
        video = self.in_video
        planes.pts, back = self.timeline.place(video.index, planes.pts, self.tick, video.time_base, self.tick)
        if back is not None:
            self.state.warnings.append(
                f"frame {self.index} (t = {when:.2f} s): the timestamps go back by {back:.2f} s; "
                "the frames from here are timed to follow on"
            )
        self.anchor = (self.index, planes.pts)


class _Upscaler:
    """The middle stage, on the caller's thread: the decoded items from ``inbox`` through the network, a
    batch of frames of one size at a time, onto ``out`` in input order (audio packets keep their place)."""

    def __init__(self, network: _Network, batch: int, inbox: queue.Queue, out: queue.Queue) -> None:
        self.network, self.batch, self.inbox, self.out = network, batch, inbox, out
        self.pending: list[tuple[str, Any]] = []  # frames and audio packets in input order, up to `batch` frames
        self.in_flight: list[tuple[tuple | None, list]] = []  # (network handle or None, items) not yet handed on
        self.shape: tuple[int, ...] | None = None  # of the frames pending: a batch holds frames of one size

    def run(self) -> None:
        """Every item up to ``_END``, then the batches still pending or in flight."""
        for item in iter(self.inbox.get, _END):
            self._add(item)
        self._flush()
        while self.in_flight:
            self._hand_on(*self.in_flight.pop(0))

    def _add(self, item: tuple[str, Any]) -> None:
        """``item`` into the pending batch, which is submitted when full or before a frame of another size."""
        kind, payload = item
        if kind == "video":
            if self.shape is not None and payload.y.shape != self.shape:
                self._flush()
            self.shape = payload.y.shape
        self.pending.append(item)
        if sum(k == "video" for k, _ in self.pending) >= self.batch:
            self._flush()

    def _flush(self) -> None:
        """The pending items submitted as one batch, and the batches before it handed on."""
        frames = [p for kind, p in self.pending if kind == "video"]
        self.in_flight.append((self.network.submit(frames) if frames else None, list(self.pending)))
        self.pending.clear()
        while len(self.in_flight) > 1:  # one batch in flight while the next is submitted
            self._hand_on(*self.in_flight.pop(0))

    def _hand_on(self, handle: tuple | None, items: list[tuple[str, Any]]) -> None:
        """A submitted batch's items onto ``out``, its frames replaced by the network's results."""
        done = iter(self.network.finish(handle)) if handle is not None else iter(())
        for kind, p in items:
            self.out.put(("video", next(done)) if kind == "video" else (kind, p))


class _Encoder:
    """The last stage, on its own thread: the upscaled planes from ``inbox`` encoded into ``output``, the
    audio packets muxed untouched, up to ``_END``."""

    def __init__(
        self,
        output: OutputContainer,
        in_video: VideoStream,
        in_audio: list[Stream],
        state: _PipelineState,
        inbox: queue.Queue,
        bar: tqdm | None,
        *,
        codec: str,
        crf: int | None,
        preset: str | None,
    ) -> None:
        self.output, self.in_video, self.in_audio, self.state, self.inbox = output, in_video, in_audio, state, inbox
        self.bar, self.codec, self.crf, self.preset = bar, codec, crf, preset
        self.video: VideoStream | None = None  # the output's video stream, made on the first frame
        self.size: tuple[int, ...] | None = None  # of the output's frames
        self.audio: dict[int, Stream] = {}  # the input's audio stream index -> the output's stream
        self.early_audio: list[Packet] = []  # audio before the first frame: the streams exist only then

    def run(self) -> None:
        """The thread's body. On an error: keep it in the state, stop the decoder, and take what the network
        stage still puts up to ``_END``, so that it never blocks on a full queue."""
        ended = False  # _END taken: the caller puts no other
        try:
            for kind, payload in iter(self.inbox.get, _END):
                if kind == "audio":
                    self._mux_audio(payload)
                else:
                    self._encode(*payload)
            ended = True
            if self.video is not None:
                self.output.mux(self.video.encode(None))
        except Exception as exc:  # noqa: BLE001
            self.state.fail(exc)
            self.state.stop.set()
            if not ended:
                for _ in iter(self.inbox.get, _END):
                    pass

    def close(self) -> None:
        """The progress bar and the output closed, once the thread has ended (an error closing the output,
        where a full disk shows, is kept in the state)."""
        if self.bar is not None:
            self.bar.close()
        try:
            self.output.close()
        except Exception as exc:  # noqa: BLE001
            self.state.fail(exc)

    def _open(self, size: tuple[int, ...]) -> None:
        """The output's streams, the video's of ``size`` (the first frame's, or the whole video's for a range
        of it), and the audio that came before the first frame."""
        self.video = _add_video_stream(
            self.output, self.in_video, self.codec, size, self.crf, self.preset, self.state.timestamps
        )
        self.size = size
        for stream in self.in_audio:
            self.audio[stream.index] = self.output.add_stream_from_template(stream)
        for packet in self.early_audio:
            packet.stream = self.audio[packet.stream.index]
            self.output.mux(packet)

    def _mux_audio(self, packet: Packet) -> None:
        """An audio packet into the output, or kept until the first frame has made the streams."""
        if self.video is None:
            self.early_audio.append(packet)
            return
        packet.stream = self.audio[packet.stream.index]
        self.output.mux(packet)

    def _encode(self, pts: int, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
        """One upscaled frame into the output, fitted into its size if the input changed size part-way."""
        if self.video is None:
            self._open(self.state.size or y.shape)
        if y.shape != self.size:
            y, u, v = _letterbox(y, u, v, self.size)
        frame = _video_frame(y, u, v)
        frame.pts, frame.time_base = pts, self.in_video.time_base
        self.output.mux(self.video.encode(frame))
        self.state.frames += 1
        if self.bar is not None:
            self.bar.update(1)


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
    network = _checked_network(src, dst, overwrite, model, scale, device, batch, "upscale_video")
    return _replace_output(
        src,
        dst,
        lambda container, tmp: _run(
            container, src, tmp, dst, network, scale, codec, crf, preset, batch, progress, queue_size
        ),
    )


def upscale_frame_range(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    model: SuperResolver,
    scale: int,
    frames: FrameRange,
    device: torch.device | str = "cpu",
    codec: str = "libx264",
    crf: int | None = 18,
    preset: str | None = "veryfast",
    batch: int = 4,
    queue_size: int = 16,
) -> VideoResult:
    """The frames of ``src`` in ``frames`` (a part cut at keyframes) through the pipeline of
    :func:`upscale_video` into ``dst``, video only, with the timestamps, frame rate, colour tags and
    output size the whole video gets; ``dst`` is replaced whole or not at all.

    Raises :class:`VideoError` as :func:`upscale_video` does, and when the input falls short inside the
    range (a decoding error, a damaged packet): a part is done completely or not at all.
    """
    src, dst = Path(src), Path(dst)
    network = _checked_network(src, dst, True, model, scale, device, batch, "upscale_frame_range")

    def run_whole(container: InputContainer, tmp: Path) -> VideoResult:
        result = _run(container, src, tmp, dst, network, scale, codec, crf, preset, batch, False, queue_size, frames)
        if result.stopped_at is not None:  # raised inside the replacement: the part is not kept
            raise VideoError(f"{src}: {result.stopped_at}")
        return result

    return _replace_output(src, dst, run_whole)


def _checked_network(
    src: Path,
    dst: Path,
    overwrite: bool,
    model: SuperResolver,
    scale: int,
    device: torch.device | str,
    batch: int,
    caller: str,
) -> _Network:
    """The arguments checked (before anything is opened or written), and the network to run."""
    _check_paths(src, dst, overwrite)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    check_model_scale(model, scale, caller)
    return _Network(model, scale, torch.device(device))


def _replace_output(src: Path, dst: Path, run: Callable[[InputContainer, Path], VideoResult]) -> VideoResult:
    """``run(container, tmp)`` on the opened ``src``, writing ``tmp``, which replaces ``dst`` when it
    returns (and is removed when it raises)."""
    container = _open_input(src)
    try:
        # The container's suffix ends the temporary name too: FFmpeg picks the muxer by it.
        with replacing(dst, suffix=dst.suffix) as tmp:
            return run(container, tmp)
    except OSError as exc:  # the rename (what went wrong inside is a VideoError already)
        raise VideoError(f"cannot write {dst}: {exc.strerror or exc}") from None
    finally:
        container.close()


def _run(
    container: InputContainer,
    src: Path,
    tmp: Path,
    dst: Path,
    network: _Network,
    scale: int,
    codec: str,
    crf: int | None,
    preset: str | None,
    batch: int,
    progress: bool,
    queue_size: int,
    frames: FrameRange | None = None,
) -> VideoResult:
    """The pipeline of :func:`upscale_video` from the open input ``container`` into ``tmp`` (``frames``:
    only those, without the audio); raises (so that ``tmp`` is removed) unless at least one frame was
    written."""
    in_video = container.streams.video[0]
    in_video.thread_type = "AUTO"
    in_audio = list(container.streams.audio) if frames is None else []
    output = _open_output(tmp, dst)
    state = _PipelineState()
    # Bounded, so that a stage running ahead waits: memory holds a few frames, not the video.
    decoded: queue.Queue = queue.Queue(queue_size)
    upscaled: queue.Queue = queue.Queue(queue_size)
    bar = _progress_bar(in_video, scale) if progress else None
    start = time.perf_counter()
    _run_stages(
        _Decoder(container, in_video, in_audio, scale, state, decoded, frames),
        _Upscaler(network, batch, decoded, upscaled),
        _Encoder(output, in_video, in_audio, state, upscaled, bar, codec=codec, crf=crf, preset=preset),
        state,
    )
    seconds = time.perf_counter() - start
    return _result(container, in_video, src, dst, state, network.seconds, seconds, whole=frames is None)


def _open_output(tmp: Path, dst: Path) -> OutputContainer:
    """The output container at ``tmp``; a :class:`VideoError` naming ``dst`` if FFmpeg can't make it."""
    import av

    try:
        return av.open(str(tmp), "w")
    except (av.FFmpegError, ValueError) as exc:
        raise VideoError(f"cannot write {dst}: {exc}") from None


def _progress_bar(in_video: VideoStream, scale: int) -> tqdm:
    """A bar counting the frames encoded, out of those the container declares (if it does)."""
    from tqdm import tqdm

    return tqdm(total=in_video.frames or None, unit="frame", desc=f"video x{scale}")


def _run_stages(decoder: _Decoder, upscaler: _Upscaler, encoder: _Encoder, state: _PipelineState) -> None:
    """The decoder and the encoder on threads of their own, the network on this one; returns once every
    stage has ended and the output is closed, whatever fails (the error kept in ``state``).

    The queues are bounded: a stage that stops early must take what the stage
    before it still puts, and every stage must end the queue after it, or
    another would wait for ever.
    """
    decoding = threading.Thread(target=decoder.run, name="espcn-decode", daemon=True)
    encoding = threading.Thread(target=encoder.run, name="espcn-encode", daemon=True)
    decoding.start()
    encoding.start()
    try:
        upscaler.run()
    except BaseException as exc:
        state.fail(exc)
        state.stop.set()
        # Let the decoder finish; the error may come after _END was taken (the
        # last batches), so don't wait for another.
        _drain(upscaler.inbox, decoding)
    finally:
        upscaler.out.put(_END)
        encoding.join()
        decoding.join()
        encoder.close()


def _result(
    container: InputContainer,
    in_video: VideoStream,
    src: Path,
    dst: Path,
    state: _PipelineState,
    network_seconds: float,
    seconds: float,
    whole: bool = True,
) -> VideoResult:
    """What the run did, with where the input fell short; raises what ended it, or when no frame was written.
    ``whole=False``, a part of the video: the container's declared length is not checked against it."""
    problems = state.problems
    if state.damaged is not None:
        kind, damaged = state.damaged
        # A video packet flagged damaged whose frame still came out is no loss: MPEG-TS files joined end to
        # end flag the packet at each join (its continuity counter jumps), every frame decoding whole.
        if kind != "video" or state.decoded < state.packets - state.discarded:
            problems.append(damaged)
    _raise_failure(state, src, dst)
    shortfall = _shortfall(container, in_video, state.decoded, state.end, state.discarded) if whole else None
    if shortfall is not None:
        problems.append(shortfall)
    return VideoResult(
        dst,
        state.frames,
        seconds,
        not problems,
        "; ".join(problems) or None,
        {"network": network_seconds, "total": seconds},
        state.warnings,
    )


def _raise_failure(state: _PipelineState, src: Path, dst: Path) -> None:
    """Raise the error that ended the run (an interrupt or a :class:`VideoError` as it is, any other as a
    :class:`VideoError`), or one saying that no frame was written."""
    error, problems = state.error, state.problems
    if error is None and state.frames > 0:
        return
    if isinstance(error, (KeyboardInterrupt, VideoError)):
        raise error
    if error is not None:
        raise VideoError(f"{src} -> {dst}: {type(error).__name__}: {error}") from error
    raise VideoError(f"{src}: no video frame could be decoded" + (f" ({problems[0]})" if problems else ""))
