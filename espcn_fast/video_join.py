"""Encoded chunks of a video joined into one file by stream copy (nothing decoded or encoded again), with
the input's audio copied once from the input, written whole or not at all."""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic_write import replacing
from .video import VideoError, _frame_rate, _open_input

if TYPE_CHECKING:
    from av.packet import Packet


def chunk_timestamps(path: str | os.PathLike, time_base: Fraction) -> list[int] | None:
    """The timestamps of a chunk file's frames in ``time_base`` (display order), or None when it is not a
    readable video or they are not whole numbers of ``time_base``."""
    import av

    try:
        with av.open(os.fspath(path)) as container:
            stream = container.streams.video[0]
            found = [p.pts * stream.time_base for p in container.demux(stream) if p.size and p.pts is not None]
    except (av.FFmpegError, IndexError, OSError):
        return None
    ticks = sorted(t / time_base for t in found)
    return [int(t) for t in ticks] if all(t.denominator == 1 for t in ticks) else None


def join_chunks(parts: list[Path], src: str | os.PathLike, dst: str | os.PathLike) -> float:
    """The video packets of ``parts`` (chunk files encoded from ``src``, in order) one after another, and
    the audio packets of ``src``, interleaved by time into ``dst``; returns the seconds it took.

    The video stream keeps the input's time base and frame rate, and the chunks' codec settings and
    colour tags (those of the first chunk: they are made alike). Raises :class:`VideoError` when a chunk
    cannot be read or the chunks' timestamps do not follow on.
    """
    import time

    import av

    src, dst = Path(src), Path(dst)
    start = time.perf_counter()
    container = _open_input(src)
    try:
        with replacing(dst, suffix=dst.suffix) as tmp:
            output = av.open(str(tmp), "w")
            try:
                _mux(output, parts, container)
            except av.FFmpegError as exc:
                raise VideoError(f"cannot join the chunks into {dst}: {exc}") from None
            finally:
                output.close()
    except OSError as exc:
        raise VideoError(f"cannot write {dst}: {exc.strerror or exc}") from None
    finally:
        container.close()
    return time.perf_counter() - start


def _mux(output, parts: list[Path], container) -> None:
    """The output's streams (video from the first chunk, audio from the input), then every packet."""
    import av

    in_video = container.streams.video[0]
    with av.open(str(parts[0])) as first:
        template = first.streams.video[0]
        video = output.add_stream_from_template(template, rate=_frame_rate(in_video))
        video.time_base = in_video.time_base
    audio = {s.index: output.add_stream_from_template(s) for s in container.streams.audio}
    sources = [_video_packets(parts, video)]
    if audio:
        sources.append(_audio_packets(container, audio))
    for _, _, packet in heapq.merge(*sources, key=lambda item: (item[0], item[1])):
        output.mux(packet)


def _video_packets(parts: list[Path], stream) -> Iterator[tuple[Fraction, int, Packet]]:
    """Every chunk's video packets in turn, for ``stream``, keyed by decode time; a packet that would not
    follow the one before (an encoder's B-frame delay at a chunk's start) is moved to just after it."""
    import av

    last: Fraction | None = None
    for part in parts:
        try:
            with av.open(str(part)) as chunk:
                source = chunk.streams.video[0]
                for packet in chunk.demux(source):
                    if packet.size == 0:
                        continue
                    tb = packet.time_base
                    if last is not None and packet.dts is not None and packet.dts * tb <= last:
                        packet.dts = int(last / tb) + 1
                        if packet.pts is not None and packet.dts > packet.pts:
                            raise VideoError(f"cannot join {part}: its timestamps do not follow the chunk before")
                    if packet.dts is not None:
                        last = packet.dts * tb
                    packet.stream = stream
                    yield (last if last is not None else Fraction(0), 0, packet)
        except av.FFmpegError as exc:
            raise VideoError(f"cannot read the chunk {part}: {exc}") from None


def _audio_packets(container, streams: dict) -> Iterator[tuple[Fraction, int, Packet]]:
    """The input's audio packets (those with a decode time, as the single-machine job keeps), for the
    output's ``streams``, keyed by decode time."""
    for packet in container.demux(*container.streams.audio):
        if packet.dts is None or packet.size == 0:
            continue
        when = packet.dts * packet.time_base
        packet.stream = streams[packet.stream.index]
        yield (when, 1, packet)
