"""A video cut into chunks of about N seconds at keyframes, found by demuxing its packets (nothing decoded
but the first frame), for jobs that upscale the chunks apart and join them.

A keyframe is a cut only where it is clean: every packet before it (in decode order) shows earlier and
every packet after it later, so that the frames of a chunk are exactly those whose timestamps lie in
[its keyframe, the next chunk's), and decoding from its keyframe needs nothing before it (an open GOP's
leading pictures, which refer back across the keyframe, make it no cut).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .video import FrameRange, VideoError, _open_input, _shortfall, _yuv420

# Timestamps that go back by more than this (seconds) are a restart (files joined end to end), not the
# reordering of B-frames.
_RESTART_SECONDS = 1.0


@dataclass(frozen=True)
class Chunk:
    """One chunk: its frames' range, numbers and times (seconds, for messages)."""

    index: int
    frames: FrameRange
    count: int  # frames in the chunk
    start_time: float
    end_time: float  # the time of the next chunk's first frame, or of the video's end

    @property
    def name(self) -> str:
        """The chunk as a failure names it: ``chunk 3 (frames 90-119, t = 3.00-4.00 s)``."""
        first, last = self.frames.first_index, self.frames.first_index + self.count - 1
        frames = f"frame {first}" if first == last else f"frames {first}-{last}"
        return f"chunk {self.index} ({frames}, t = {self.start_time:.2f}-{self.end_time:.2f} s)"


@dataclass
class ChunkPlan:
    """The chunks of a video, every frame's timestamp (display order) and what the container declares."""

    chunks: list[Chunk]
    pts: list[int]  # every frame's timestamp, in the video stream's time base, increasing
    time_base: Fraction
    first_shape: tuple[int, int]  # (height, width) of the first frame, upright
    shortfall: str | None  # where the input falls short of what its container declares, or None

    def pts_of(self, chunk: Chunk) -> list[int]:
        """The timestamps of ``chunk``'s frames."""
        first = chunk.frames.first_index
        return self.pts[first : first + chunk.count]


def plan_chunks(src: str | os.PathLike, seconds: float) -> ChunkPlan:
    """``src`` cut at clean keyframes into chunks of about ``seconds`` (at least that long, but for the
    last; longer where keyframes are sparse). Raises :class:`VideoError` for what cannot be cut: no
    timestamps (a raw stream), timestamps that repeat or start again (files joined end to end)."""
    if not seconds > 0:
        raise VideoError(f"the chunk length must be more than 0 seconds, got {seconds:g}")
    src = Path(src)
    if not src.is_file():
        raise VideoError(f"input not found: {src}")
    container = _open_input(src)
    try:
        video = container.streams.video[0]
        time_base = video.time_base
        packets, discarded, end = _video_packets(container, video, src)
        if not packets:
            raise VideoError(f"{src}: no video frame could be decoded")
        pts = sorted(p for p, _ in packets)
        _check_timestamps(src, packets, pts, time_base)
        first_shape = _first_shape(container, video, src)
        shortfall = _shortfall(container, video, len(pts), end, discarded)
    finally:
        container.close()
    cuts = _cuts(packets, pts, max(1, round(seconds / time_base)))
    return ChunkPlan(_chunks(cuts, pts, time_base, end, first_shape), pts, time_base, first_shape, shortfall)


def _video_packets(container, video, src: Path) -> tuple[list[tuple[int, bool]], int, float]:
    """(pts, keyframe) of every video packet that makes a frame, in decode order; the packets the
    edit list discards; how far the packets reach (seconds)."""
    import av

    packets, discarded, end = [], 0, 0.0
    try:
        for packet in container.demux(video):
            if packet.size == 0:
                continue
            if packet.is_discard:  # outside an MP4's edit list: never shown
                discarded += 1
                continue
            if packet.pts is None:
                raise VideoError(
                    f"{src} has no timestamps (a raw stream): it cannot be cut into chunks; run it without --cluster"
                )
            packets.append((packet.pts, bool(packet.is_keyframe)))
            end = max(end, float((packet.pts + (packet.duration or 0)) * video.time_base))
    except av.FFmpegError as exc:
        raise VideoError(f"{src}: reading its packets failed after {len(packets)} frames: {exc}") from None
    return packets, discarded, end


def _check_timestamps(src: Path, packets: list[tuple[int, bool]], pts: list[int], time_base: Fraction) -> None:
    """Refuses timestamps that repeat or start again: chunks are cut by timestamp, and the single-machine
    job moves such frames on (with the audio), which a chunk cannot know of."""
    for a, b in zip(pts, pts[1:]):
        if a == b:
            raise VideoError(
                f"{src}: two frames have the timestamp t = {float(a * time_base):.3f} s: "
                "it cannot be cut into chunks; run it without --cluster"
            )
    latest = packets[0][0]
    for p, _ in packets:
        if float((latest - p) * time_base) > _RESTART_SECONDS:
            raise VideoError(
                f"{src}: its timestamps start again at t = {float(p * time_base):.2f} s (files joined end to "
                "end?): it cannot be cut into chunks; run it without --cluster"
            )
        latest = max(latest, p)


def _first_shape(container, video, src: Path) -> tuple[int, int]:
    """The (height, width) of the first frame, upright (one frame decoded)."""
    import av

    container.seek(0)
    try:
        for frame in container.decode(video):
            return tuple(_yuv420(frame).y.shape)
    except av.FFmpegError as exc:
        raise VideoError(f"{src}: its first frame cannot be decoded: {exc}") from None
    raise VideoError(f"{src}: no video frame could be decoded")


def _cuts(packets: list[tuple[int, bool]], pts: list[int], step: int) -> list[int]:
    """The timestamps of the clean keyframes chosen as cuts: the first at least ``step`` after the
    video's start, each next at least ``step`` after the one before."""
    n = len(packets)
    later_min = [0] * n  # the earliest timestamp of the packets after each one
    low = None
    for i in range(n - 1, -1, -1):
        later_min[i] = low if low is not None else packets[i][0]
        low = packets[i][0] if low is None else min(low, packets[i][0])
    cuts, last, earlier_max = [], pts[0], None
    for i, (p, key) in enumerate(packets):
        clean = key and (earlier_max is None or earlier_max < p) and (i == n - 1 or later_min[i] > p)
        if clean and i > 0 and p >= last + step:
            cuts.append(p)
            last = p
        earlier_max = p if earlier_max is None else max(earlier_max, p)
    return cuts


def _chunks(
    cuts: list[int], pts: list[int], time_base: Fraction, end: float, first_shape: tuple[int, int]
) -> list[Chunk]:
    """The chunks between the cuts, numbered, with their frames' numbers and times."""
    import bisect

    bounds = [None, *cuts, None]
    chunks, first = [], 0
    for i, (start, stop) in enumerate(zip(bounds, bounds[1:], strict=False)):
        after = len(pts) if stop is None else bisect.bisect_left(pts, stop)
        frames = FrameRange(start, stop, first, first_shape)
        stop_time = end if stop is None else float(stop * time_base)
        chunks.append(Chunk(i, frames, after - first, float(pts[first] * time_base), stop_time))
        first = after
    return chunks
