"""``espcn-fast video`` end to end on short videos made here with PyAV, and its error paths."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

from espcn_fast import FastESPCN  # noqa: E402
from espcn_fast import video as video_module  # noqa: E402
from espcn_fast.benchmark.synthetic_video import make_video  # noqa: E402
from espcn_fast.cli import main  # noqa: E402
from espcn_fast.metrics import psnr  # noqa: E402
from espcn_fast.video import VideoError, upscale_video  # noqa: E402

from .conftest import random_rgb  # noqa: E402


def decoded_y(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [video_module._yuv420(f).y for f in c.decode(video=0)]


def frame_pts(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(video=0)]


def audio_packets(path: Path) -> int:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return 0
        return sum(1 for p in c.demux(audio=0) if p.dts is not None)


@pytest.fixture(scope="module")
def model() -> FastESPCN:
    return FastESPCN.from_pretrained(3)


def expected_y(model: FastESPCN, y: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        sr = model(torch.from_numpy(y)[None, None].float() / 255.0)[0, 0]
    return torch.floor(sr.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()


def test_end_to_end_frames_timestamps_audio_and_pixels(tmp_path, model):
    src = make_video(tmp_path / "in.mp4", frames=10)
    dst = tmp_path / "out.mp4"
    assert main(["video", str(src), "-o", str(dst), "--scale", "3", "--crf", "8", "--batch", "3", "-q"]) == 0
    with av.open(str(dst)) as c:
        v = c.streams.video[0]
        assert (v.width, v.height, v.codec_context.name) == (156, 108, "h264")
    assert frame_pts(dst) == frame_pts(src)
    assert audio_packets(dst) == audio_packets(src) > 0
    outs, ins = decoded_y(dst), decoded_y(src)
    assert len(outs) == len(ins) == 10
    for lr, hr in zip(ins, outs):
        value = psnr(torch.from_numpy(hr).double(), torch.from_numpy(expected_y(model, lr)).double())
        assert value > 40, f"frame PSNR against FastESPCN on the decoded Y: {value:.1f} dB"
    assert not list(tmp_path.glob(".*")), "the temporary file was left behind"


def test_odd_size_one_frame_no_audio(tmp_path, model):
    # libx264 needs even input sizes; an odd size comes from a codec that takes it.
    src = make_video(tmp_path / "in.mkv", frames=1, h=35, w=51, audio=False, codec="ffv1", pix_fmt="yuv420p")
    result = upscale_video(src, tmp_path / "out.mp4", model, 3)
    assert result.complete and result.frames == 1
    with av.open(str(result.output)) as c:
        assert not c.streams.audio
        assert (c.streams.video[0].width, c.streams.video[0].height) == (152, 104)  # 153x105 cropped to even


def test_grey_and_variable_frame_rate(tmp_path, model):
    tb = Fraction(1, 1000)
    pts = [0, 40, 100, 120, 300, 310]
    src = make_video(tmp_path / "grey.mkv", frames=6, audio=False, codec="ffv1", pix_fmt="gray", pts=pts, time_base=tb)
    dst = tmp_path / "out.mkv"
    result = upscale_video(src, dst, model, 3, crf=8)
    assert result.frames == 6
    assert frame_pts(dst) == frame_pts(src) == pts
    with av.open(str(dst)) as c:
        frame = next(c.decode(video=0))
        planes = video_module._yuv420(frame)
    assert abs(int(planes.u.mean()) - 128) <= 1 and abs(int(planes.v.mean()) - 128) <= 1  # neutral chroma


def test_rotated_frames_are_turned_upright():
    class Plane(bytes):
        pass

    class Frame:
        format = type("F", (), {"name": "yuv420p"})()
        pts, rotation, color_range = 7, 90, 0

        def __init__(self):
            self.planes = []
            for h, w in ((4, 6), (2, 3), (2, 3)):
                p = Plane(np.arange(h * w, dtype=np.uint8).tobytes())
                p.height, p.width, p.line_size = h, w, w
                self.planes.append(p)

    planes = video_module._yuv420(Frame())
    assert planes.y.shape == (6, 4) and planes.u.shape == (3, 2)
    assert np.array_equal(planes.y, np.rot90(np.arange(24, dtype=np.uint8).reshape(4, 6)))


def test_corrupt_part_way_keeps_the_frames_done(tmp_path, monkeypatch, capsys):
    src = make_video(tmp_path / "in.mp4", frames=9)
    real = video_module._yuv420
    seen = []

    def failing(frame):
        seen.append(1)
        if len(seen) > 5:
            raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")
        return real(frame)

    monkeypatch.setattr(video_module, "_yuv420", failing)
    dst = tmp_path / "out.mp4"
    assert main(["video", str(src), "-o", str(dst), "--scale", "2", "-q"]) == 1
    err = capsys.readouterr().err
    assert "corrupt" in err and "after frame 5" in err and "kept the 5 frame(s)" in err
    monkeypatch.setattr(video_module, "_yuv420", real)
    assert len(decoded_y(dst)) == 5


def test_a_failure_leaves_no_output(tmp_path):
    src = make_video(tmp_path / "in.mp4", frames=4)
    dst = tmp_path / "out.mp4"

    def broken(y: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("the network failed")

    with pytest.raises(VideoError, match="the network failed"):
        upscale_video(src, dst, broken, 2)
    assert not dst.exists() and not list(tmp_path.glob(".*"))


def raised_within(seconds: float, job) -> BaseException | None:
    """What ``job()`` raised, run in a thread so that a hang fails the test instead of stopping it."""
    import threading

    outcome: list = []

    def run() -> None:
        try:
            job()
        except BaseException as exc:  # noqa: BLE001  (KeyboardInterrupt included)
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: it hangs"
    return outcome[0] if outcome else None


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_an_error_in_the_last_batch_does_not_hang(tmp_path, error):
    """The last batches run after the decoder's end marker was taken: an error there must not wait for another."""
    src = make_video(tmp_path / "in.mp4", frames=5, audio=False)
    dst = tmp_path / "out.mp4"
    calls = []

    def fails_last(y: torch.Tensor) -> torch.Tensor:  # batches of 2, 2, 1: the third is the final flush
        calls.append(len(y))
        if len(calls) == 3:
            raise error("the network failed")
        return torch.nn.functional.interpolate(y, scale_factor=2)

    exc = raised_within(60, lambda: upscale_video(src, dst, fails_last, 2, batch=2))
    assert calls == [2, 2, 1]
    assert isinstance(exc, VideoError if error is RuntimeError else KeyboardInterrupt)
    assert "the network failed" in str(exc)
    assert not dst.exists() and not list(tmp_path.glob(".*"))


def test_an_error_in_the_encoders_final_flush_does_not_hang(tmp_path, monkeypatch, model):
    """The encoder flushes after taking its end marker (a full disk fails there): it must not wait for another."""
    real = video_module._add_video_stream

    class FullDisk:
        def __init__(self, stream) -> None:
            self.stream = stream

        def encode(self, frame):
            if frame is None:
                raise OSError(28, "No space left on device")
            return self.stream.encode(frame)

    monkeypatch.setattr(video_module, "_add_video_stream", lambda *args: FullDisk(real(*args)))
    src = make_video(tmp_path / "in.mp4", frames=3, audio=False)
    dst = tmp_path / "out.mp4"
    exc = raised_within(60, lambda: upscale_video(src, dst, model, 3))
    assert isinstance(exc, VideoError) and "No space left on device" in str(exc)
    assert not dst.exists() and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("rate", [25, 30])
def test_raw_stream_without_timestamps_is_timed_by_its_frame_rate(tmp_path, model, rate):
    # The raw demuxer reports 25 fps whatever the stream's own timing says: 30 must stay 30.
    src = make_video(tmp_path / "in.h264", frames=5, audio=False, rate=rate)  # raw H.264: no timestamps
    with av.open(str(src)) as c:
        assert [f.pts for f in c.decode(video=0)] == [None] * 5
    dst = tmp_path / "out.mp4"
    assert upscale_video(src, dst, model, 3).frames == 5
    with av.open(str(dst)) as c:
        times = [f.time for f in c.decode(video=0)]
        declared = c.streams.video[0].average_rate
    assert times == pytest.approx([i / rate for i in range(5)])
    assert declared == rate  # the stream's own rate too (the last frame lasted 1/25 s)


def test_rgb_input_gets_the_matrix_its_yuv_was_made_with(tmp_path, model):
    # RGB's matrix tag (0) is invalid for 4:2:0; swscale converts RGB with BT.601.
    src = make_video(tmp_path / "in.mkv", frames=2, audio=False, codec="libx264rgb", pix_fmt="rgb24")
    with av.open(str(src)) as c:
        assert c.streams.video[0].codec_context.colorspace == 0
    dst = tmp_path / "out.mp4"
    with pytest.raises(ValueError, match="upscale_video: scale 2 but the model upscales x3"):
        upscale_video(src, dst, model, 2)
    upscale_video(src, dst, model, 3)
    with av.open(str(dst)) as c:
        assert c.streams.video[0].codec_context.colorspace == 6


def make_full_range_video(path: Path, colours: tuple, frames: int = 3, h: int = 32, w: int = 48) -> Path:
    """Flat colours side by side, full-range BT.709 YUV, tagged as such (as a phone writes it)."""
    out = av.open(str(path), "w")
    stream = out.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.options = {"qp": "0"}
    ctx = stream.codec_context
    ctx.color_range, ctx.colorspace, ctx.color_primaries, ctx.color_trc = 2, 1, 1, 1  # JPEG range, BT.709
    rgb = np.zeros((h, w, 3), np.uint8)
    for i, colour in enumerate(colours):
        rgb[:, i * w // len(colours) : (i + 1) * w // len(colours)] = colour
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="JPEG")
        frame.pts = i
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
    out.close()
    return path


def test_full_range_input_keeps_its_colours_and_tags(tmp_path, model):
    colours = ((50, 50, 50), (200, 200, 200), (200, 60, 40), (40, 120, 200))
    src = make_full_range_video(tmp_path / "in.mp4", colours)
    dst = tmp_path / "out.mp4"
    upscale_video(src, dst, model, 3)
    with av.open(str(dst)) as c:
        ctx = c.streams.video[0].codec_context
        assert (ctx.color_range, ctx.colorspace, ctx.color_primaries, ctx.color_trc) == (1, 1, 1, 1)  # limited, BT.709
        rgb = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(int)  # read as the tags say
    h, w = rgb.shape[:2]
    for i, colour in enumerate(colours):
        x = (2 * i + 1) * w // (2 * len(colours))  # the middle of each patch, away from chroma edges
        assert np.abs(rgb[h // 2, x - 2 : x + 3] - colour).max() <= 4, (colour, rgb[h // 2, x])


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing", "input not found"),
        ("not_video", "is not a video"),
        ("audio_only", "has no video stream"),
        ("no_folder", "the folder .* does not exist"),
        ("exists", "exists; pass --overwrite"),
        ("input", "refusing to overwrite the input"),
        ("folder", "it is a folder"),
    ],
)
def test_errors_are_one_line(tmp_path, capsys, case, match):
    src = make_video(tmp_path / "in.mp4", frames=2)
    dst = tmp_path / "out.mp4"
    if case == "missing":
        src = tmp_path / "nope.mp4"
    elif case == "not_video":
        src = tmp_path / "text.mp4"
        src.write_text("hello")
    elif case == "audio_only":
        src = tmp_path / "tone.m4a"
        out = av.open(str(src), "w")
        tone = out.add_stream("aac", rate=44100)
        for i in range(4):
            af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
            af.sample_rate, af.pts = 44100, i * 1024
            out.mux(tone.encode(af))
        out.mux(tone.encode(None))
        out.close()
    elif case == "no_folder":
        dst = tmp_path / "missing" / "out.mp4"
    elif case == "exists":
        dst.write_bytes(b"keep me")
    elif case == "input":
        dst = src
    elif case == "folder":
        dst.mkdir()
    assert main(["video", str(src), "-o", str(dst), "-q", "--overwrite" if case == "folder" else "--batch=4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("espcn-fast: error:")
    assert re.search(match, err), err
    if case == "exists":
        assert dst.read_bytes() == b"keep me"
    assert not list(tmp_path.glob(".*"))


def test_bad_batch_and_precision_are_one_line_errors(tmp_path, capsys):
    src = make_video(tmp_path / "in.mp4", frames=2, audio=False)
    assert main(["video", str(src), "-o", str(tmp_path / "a.mp4"), "--batch", "0", "-q"]) == 2
    assert "batch must be >= 1, got 0" in capsys.readouterr().err
    assert (
        main(["video", str(src), "-o", str(tmp_path / "b.mp4"), "--backend", "cpu", "--precision", "fp16", "-q"]) == 2
    )
    assert "backend 'cpu' computes in fp32, bf16, int8; precision 'fp16'" in capsys.readouterr().err
    assert not (tmp_path / "a.mp4").exists() and not (tmp_path / "b.mp4").exists()


def test_output_gets_the_umask_permissions(tmp_path, model):
    """The output is an ordinary new file: its permissions come from the umask (mkstemp would make it 0600)."""
    import os

    src = make_video(tmp_path / "in.mp4", frames=2, audio=False)
    old = os.umask(0o027)
    try:
        upscale_video(src, tmp_path / "out.mp4", model, 3)
    finally:
        os.umask(old)
    assert (tmp_path / "out.mp4").stat().st_mode & 0o777 == 0o640


def test_missing_pyav_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    import sys

    src = make_video(tmp_path / "in.mp4", frames=2, audio=False)
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    assert main(["video", str(src), "-o", str(tmp_path / "out.mp4"), "-q"]) == 2
    assert "needs PyAV: pip install" in capsys.readouterr().err


def test_a_yuv420p_frame_tagged_full_range_is_converted():
    # Full range can come as a tag on a plain yuv420p frame, not only as a yuvj format.
    from espcn_fast.video import _yuv420

    frame = av.VideoFrame(8, 4, "yuv420p")
    for plane, value in zip(frame.planes, (0, 128, 128)):
        np.frombuffer(plane, np.uint8)[:] = value
    frame.color_range = 2  # AVCOL_RANGE_JPEG
    assert int(_yuv420(frame).y.max()) == 16  # black: 0 in full range, 16 in limited


@pytest.mark.parametrize(
    "name, frames, cut, match",
    [
        # MP4 with its index first: the index declares 100 frames, half the data is there.
        ("in.mp4", 100, 0.5, r"ends at frame 52 \(t = 2\.08 s\) of the 100 frames its container declares"),
        # Cut inside a frame: the demuxer flags the packet, which a threaded decoder drops without an error.
        ("in.mp4", 100, 0.55, r"damaged data at frame 57 \(t = 2\.28 s\)"),
        # Matroska declares a duration, not a frame count.
        ("in.mkv", 150, 0.5, r"ends at 3\.25 s of the 6\.99 s its container declares"),
    ],
)
def test_a_video_cut_short_keeps_its_frames_and_says_where_it_ends(tmp_path, capsys, name, frames, cut, match):
    index_first = {"movflags": "faststart"} if name.endswith("mp4") else None
    whole = make_video(tmp_path / name, frames=frames, options=index_first)
    data = whole.read_bytes()
    src = tmp_path / f"cut_{name}"
    src.write_bytes(data[: int(len(data) * cut)])
    dst = tmp_path / "out.mp4"
    assert main(["video", str(src), "-o", str(dst), "--scale", "3", "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"espcn-fast: error: {src} is corrupt: "), err
    assert re.search(match, err), err
    kept = len(decoded_y(dst))
    assert 0 < kept < frames and f"kept the {kept} frame(s) done in {dst}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, src.name, "out.mp4"])


def test_a_whole_video_is_not_taken_for_a_cut_one(tmp_path):
    src = make_video(tmp_path / "in.mp4", frames=30, options={"movflags": "faststart"})
    result = upscale_video(src, tmp_path / "out.mp4", FastESPCN.from_pretrained(2), 2)
    assert result.complete and result.stopped_at is None and result.frames == 30


def test_an_mp4_trimmed_by_its_edit_list_is_not_taken_for_a_cut_one(tmp_path):
    """Stream copy from a time (``ffmpeg -ss 1 -c copy``) keeps the frames from the keyframe before and an edit
    list that hides them: the index counts them, the decoder drops them."""
    whole = make_video(tmp_path / "whole.mp4", frames=40, audio=False)
    src = tmp_path / "in.mp4"
    with av.open(str(whole)) as i, av.open(str(src), "w") as o:
        stream = o.add_stream_from_template(i.streams.video[0])
        tick = round(1 / (i.streams.video[0].average_rate * i.streams.video[0].time_base))
        for packet in i.demux(video=0):
            if packet.dts is None:
                continue
            packet.pts -= 10 * tick  # the first 10 frames before the start: written, not shown
            packet.dts -= 10 * tick
            packet.stream = stream
            o.mux(packet)
    with av.open(str(src)) as c:
        assert c.streams.video[0].frames == 40 and sum(1 for _ in c.decode(video=0)) == 30
    result = upscale_video(src, tmp_path / "out.mp4", FastESPCN.from_pretrained(2), 2)
    assert result.complete and result.stopped_at is None and result.frames == 30


@pytest.mark.parametrize("name, content", [("photo.jpg", "JPEG"), ("photo.png", "PNG"), ("photo.mp4", "PNG")])
def test_a_still_image_is_refused(tmp_path, capsys, name, content):
    from PIL import Image

    src = tmp_path / name
    Image.fromarray(random_rgb(24, 32).permute(1, 2, 0).numpy()).save(src, format=content)
    dst = tmp_path / "x.mp4"
    assert main(["video", str(src), "-o", str(dst), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"espcn-fast: error: {src} is a still image, not a video; use espcn-fast upscale for images"
    assert not dst.exists()


def test_an_output_name_as_long_as_the_system_allows(tmp_path, model):
    src = make_video(tmp_path / "in.mp4", frames=2, audio=False)
    dst = tmp_path / ("v" * 240 + ".mp4")  # 244 bytes of the 255 a name may have
    assert upscale_video(src, dst, model, 3).frames == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.mp4", dst.name])
    assert len(decoded_y(dst)) == 2


def concatenated(path: Path, *parts: Path) -> Path:
    """MPEG-TS files joined byte for byte (as ``cat a.ts b.ts``): each part's timestamps start again."""
    path.write_bytes(b"".join(p.read_bytes() for p in parts))
    return path


@pytest.mark.parametrize("batch", [1, 4])  # 4: a batch would hold frames of both sizes
def test_a_size_change_is_upscaled_at_its_size_and_letterboxed(tmp_path, capsys, batch):
    tick = Fraction(1, 90000)  # MPEG-TS time: the second part's times follow on, only its size differs
    first = make_video(
        tmp_path / "a.ts", frames=6, h=36, w=52, audio=False, pts=[3600 * i for i in range(6)], time_base=tick
    )
    second = make_video(
        tmp_path / "b.ts", frames=6, h=48, w=40, audio=False, pts=[3600 * i for i in range(6, 12)], time_base=tick
    )
    src = concatenated(tmp_path / "in.ts", first, second)
    dst = tmp_path / "out.mp4"
    assert main(["video", str(src), "-o", str(dst), "--scale", "3", "--batch", str(batch), "-q"]) == 0
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(
        r"espcn-fast: warning: frame 6 \(t = [0-9.]+ s\): the picture changes from 52x36 to 40x48; "
        r"upscaled at its size and fitted into the output's 156x108, the aspect ratio kept "
        r"\(black bars\)",
        err,
    ), err
    outs = decoded_y(dst)
    assert len(outs) == 12 and all(y.shape == (108, 156) for y in outs)
    # 120x144 fitted into 156x108: 90x108 in the middle, 32 and 34 columns of black beside it.
    y = outs[8].astype(int)
    bars = [x for x in range(156) if abs(y[:, x].mean() - 16) < 4]
    assert bars == list(range(32)) + list(range(122, 156)), bars
    assert y[:, 32:122].std() > 10
    assert not any(abs(o[:, x].mean() - 16) < 4 for o in outs[:6] for x in (0, 155))  # the first size: no bars


def test_timestamps_that_start_again_are_made_to_follow_on(tmp_path, capsys):
    first = make_video(tmp_path / "a.ts", frames=6)
    second = make_video(tmp_path / "b.ts", frames=6)
    src = concatenated(tmp_path / "in.ts", first, second)
    dst = tmp_path / "out.mkv"
    assert main(["video", str(src), "-o", str(dst), "--scale", "3", "-q"]) == 0
    err = capsys.readouterr().err
    assert "espcn-fast: warning: frame 6 (t = 0.02 s): the timestamps go back by 0.20 s" in err, err
    pts = frame_pts(dst)
    assert len(pts) == 12 and all(b > a for a, b in zip(pts, pts[1:])), pts
    assert audio_packets(dst) == audio_packets(src) > 0


def test_joined_mpeg_ts_files_are_not_called_damaged(tmp_path, capsys):
    """The demuxer flags the packet at each join (its continuity counter jumps) though every frame decodes."""
    part = make_video(tmp_path / "a.ts", frames=8)
    src = concatenated(tmp_path / "in.ts", part, part)
    with av.open(str(src)) as c:
        assert any(p.is_corrupt for p in c.demux(video=0))
    dst = tmp_path / "out.mkv"
    assert main(["video", str(src), "-o", str(dst), "--scale", "2", "-q"]) == 0
    err = capsys.readouterr().err
    assert "damaged" not in err and "the timestamps go back" in err, err
    assert len(frame_pts(dst)) == 16


def test_sound_stays_with_the_picture_where_timestamps_start_again(tmp_path):
    """One shift for every stream at a restart: each stream shifted by its own gap would move the sound
    against the picture by up to a packet at every join."""
    first = make_video(tmp_path / "a.ts", frames=6)
    second = make_video(tmp_path / "b.ts", frames=6)
    src = concatenated(tmp_path / "in.ts", first, second)
    dst = tmp_path / "out.mkv"
    upscale_video(src, dst, FastESPCN.from_pretrained(2), 2)

    def first_frame_and_sound(path: Path, frame: int) -> tuple[float, float]:
        """When frame ``frame`` and the first audio packet of its part are shown, in seconds (each part
        has as many audio packets)."""
        with av.open(str(path)) as c:
            video = [f.time for f in c.decode(video=0)]
        with av.open(str(path)) as c:
            audio = [float(p.pts * p.time_base) for p in c.demux(audio=0) if p.dts is not None]
        return video[frame], audio[len(audio) // 2 if frame else 0]

    v_in, a_in = first_frame_and_sound(second, 0)  # the second part alone, as it was made
    v_out, a_out = first_frame_and_sound(dst, 6)
    assert v_out - a_out == pytest.approx(v_in - a_in, abs=0.002)  # the Matroska clock counts milliseconds
