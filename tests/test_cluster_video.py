"""``espcn-fast video --cluster`` on a real local Ray cluster (2 CPUs, started here): the chunked job's output
against the single-machine output frame by frame (timestamps, frame rate, colour tags, audio, pixels),
variable frame rates, a chunk of the last frame alone, a worker killed mid-chunk, a chunk that fails for
good and a rerun that keeps the chunks done, and the errors for what cannot be cut."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")
pytest.importorskip("ray")

from espcn_fast import FastESPCN  # noqa: E402
from espcn_fast import cluster_video as cluster_video_module  # noqa: E402
from espcn_fast.atomic_write import leftover_temporaries  # noqa: E402
from espcn_fast.benchmark.synthetic_video import make_video  # noqa: E402
from espcn_fast.cli import main  # noqa: E402
from espcn_fast.cluster_video import upscale_video_on_cluster  # noqa: E402
from espcn_fast.metrics import psnr  # noqa: E402
from espcn_fast.video import VideoError, _yuv420, upscale_video  # noqa: E402
from espcn_fast.video_chunks import plan_chunks  # noqa: E402

from .conftest import kill_one_ray_process, polling  # noqa: E402

pytestmark = pytest.mark.usefixtures("local_ray")

# x264 lossless with a keyframe every 10 frames: at 25 fps, 0.4 s chunks cut at every keyframe.
KEYS_EVERY_10 = {"qp": "0", "g": "10"}


@pytest.fixture(scope="module")
def model() -> FastESPCN:
    return FastESPCN.from_pretrained(3)


def describe(path: Path) -> dict:
    """What the comparison looks at: the video stream's settings and tags, every frame's timestamp and
    planes, the audio packets' timestamps."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        ctx = v.codec_context
        info = {
            "time_base": v.time_base,
            "rate": v.average_rate,
            "size": (v.width, v.height),
            "tags": (ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range),
            "audio": [(p.pts, p.dts) for s in c.streams.audio for p in c.demux(s) if p.size],
        }
    with av.open(str(path)) as c:
        frames = [_yuv420(f) for f in c.decode(video=0)]
    info["pts"] = [f.pts for f in frames]
    return info, frames


def assert_same_as_single_machine(single: Path, chunked: Path, min_psnr: float = 45.0) -> None:
    expected, want = describe(single)
    found, got = describe(chunked)
    assert len(got) == len(want) > 0
    assert found == expected  # timestamps, time base, frame rate, size, colour tags, audio packets
    for i, (a, b) in enumerate(zip(want, got, strict=True)):
        for plane in ("y", "u", "v"):
            x, y = getattr(a, plane), getattr(b, plane)
            if not np.array_equal(x, y):
                value = psnr(torch.from_numpy(x).double(), torch.from_numpy(y).double())
                assert value >= min_psnr, f"frame {i} {plane}: {value:.1f} dB against the single-machine output"


def assert_nothing_left(folder: Path, output: Path) -> None:
    assert not output.with_name(output.name + ".chunks").exists(), "the chunks' folder was left"
    assert not leftover_temporaries(output) and not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_chunks_join_into_the_single_machine_output_with_its_audio(tmp_path, model, capsys):
    # 31 frames, keyframes at 0, 10, 20, 30: the last chunk is the last frame alone.
    src = make_video(tmp_path / "in.mp4", frames=31, h=48, w=64, encoder_options=KEYS_EVERY_10)
    plan = plan_chunks(src, 0.4)
    assert [c.name for c in plan.chunks][-1] == "chunk 3 (frame 30, t = 1.20-1.24 s)"
    assert [c.count for c in plan.chunks] == [10, 10, 10, 1]
    single = upscale_video(src, tmp_path / "single.mp4", model, 3, crf=0).output
    out = tmp_path / "out" / "cluster.mp4"
    out.parent.mkdir()
    code = main(["video", str(src), "-o", str(out), "--cluster", "auto", "--chunk-seconds", "0.4", "--crf", "0", "-q"])
    assert code == 0, capsys.readouterr().err
    assert_same_as_single_machine(single, out)
    assert describe(out)[0]["audio"], "the audio was not copied"
    assert_nothing_left(out.parent, out)


def test_variable_frame_rate_in_matroska(tmp_path, model):
    tb = Fraction(1, 1000)
    pts = [0, 40, 100, 120, 300, 310, 350, 420, 700, 733, 766, 800, 1000, 1040, 1080, 1500, 1520, 1540]
    src = make_video(
        tmp_path / "vfr.mkv", frames=len(pts), h=48, w=64, pts=pts, time_base=tb, encoder_options={"qp": "0", "g": "4"}
    )
    assert len(plan_chunks(src, 0.3).chunks) >= 3
    single = upscale_video(src, tmp_path / "single.mkv", model, 3, crf=0).output
    out = tmp_path / "cluster.mkv"
    result = upscale_video_on_cluster(src, out, 3, chunk_seconds=0.3, crf=0, workers=2, progress=False)
    assert result.complete and result.frames == len(pts)
    assert describe(out)[0]["pts"] == pts
    assert_same_as_single_machine(single, out)
    assert_nothing_left(tmp_path, out)


def test_b_frames_at_the_default_quality_keep_every_frame_and_timestamp(tmp_path, model):
    """x264's B-frames (preset veryfast) delay each chunk's decode times: the join keeps them increasing."""
    src = make_video(tmp_path / "in.mp4", frames=24, h=48, w=64, encoder_options={"crf": "20", "g": "8"})
    single = upscale_video(src, tmp_path / "single.mp4", model, 3).output
    out = tmp_path / "cluster.mp4"
    result = upscale_video_on_cluster(src, out, 3, chunk_seconds=0.3, progress=False)
    assert result.frames == 24
    assert describe(out)[0]["pts"] == describe(single)[0]["pts"]
    # Two encodes at crf 18 differ by the encoder's loss only.
    assert_same_as_single_machine(single, out, min_psnr=30.0)


def test_a_worker_killed_mid_chunk_is_retried_and_nothing_is_lost(tmp_path, model):
    src = make_video(tmp_path / "in.mp4", frames=80, h=96, w=128, encoder_options=KEYS_EVERY_10)
    out = tmp_path / "cluster.mp4"
    killed: list[int] = []
    with polling(lambda: kill_one_ray_process("_upscale_chunk", killed)):
        result = upscale_video_on_cluster(src, out, 3, chunk_seconds=0.4, crf=0, workers=2, progress=False)
    assert killed, "no chunk's worker process was found to kill"
    assert result.frames == 80
    single = upscale_video(src, tmp_path / "single.mp4", model, 3, crf=0).output
    assert_same_as_single_machine(single, out)
    assert_nothing_left(tmp_path, out)


def test_a_chunk_that_fails_for_good_is_named_and_a_rerun_keeps_the_chunks_done(tmp_path, model, capsys, monkeypatch):
    src = make_video(tmp_path / "in.mp4", frames=31, h=48, w=64, encoder_options=KEYS_EVERY_10)
    out = tmp_path / "cluster.mp4"
    work = tmp_path / "cluster.mp4.chunks"
    work.mkdir()
    (work / "chunk_00001.mp4").mkdir()  # in the way of chunk 1's file: its every attempt fails
    cli = ["video", str(src), "-o", str(out), "--cluster", "auto", "--chunk-seconds", "0.4", "--crf", "0", "-q"]
    assert main(cli) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("failed: chunk 1 (frames 10-19, t = 0.40-0.80 s): cannot write ")
    assert err[0].endswith("chunk_00001.mp4: it is a folder; name the output file")
    assert len(err) == 2 and err[1].startswith("espcn-fast: error: 1 of 4 chunks failed; the 3 done are kept in ")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    done = {p.name: p.stat().st_ino for p in work.iterdir() if p.is_file() and p.name.startswith("chunk_")}
    assert sorted(done) == ["chunk_00000.mp4", "chunk_00002.mp4", "chunk_00003.mp4"]
    assert not [p for p in work.iterdir() if p.name.startswith(".")]

    (work / "chunk_00001.mp4").rmdir()
    joined: dict[str, int] = {}
    real_join = cluster_video_module.join_chunks

    def join_noting_inodes(parts, *args):
        joined.update({p.name: p.stat().st_ino for p in parts})
        return real_join(parts, *args)

    monkeypatch.setattr(cluster_video_module, "join_chunks", join_noting_inodes)
    assert main(cli) == 0
    assert all(joined[name] == inode for name, inode in done.items()), "a chunk done before was redone"
    single = upscale_video(src, tmp_path / "single.mp4", model, 3, crf=0).output
    assert_same_as_single_machine(single, out)
    assert not work.exists()


def test_chunks_of_other_settings_are_not_reused(tmp_path):
    src = make_video(tmp_path / "in.mp4", frames=21, h=48, w=64, encoder_options=KEYS_EVERY_10)
    out = tmp_path / "cluster.mp4"
    work = tmp_path / "cluster.mp4.chunks"
    work.mkdir()
    (work / "chunk_00000.mp4").write_bytes(b"an earlier job's chunk")
    (work / "job.json").write_text("{}")
    result = upscale_video_on_cluster(src, out, 3, chunk_seconds=0.4, crf=0, progress=False)
    assert result.frames == 21 and not work.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--chunk-seconds", "0"], "--chunk-seconds must be more than 0, got 0"),
        (["--chunk-seconds", "-2"], "--chunk-seconds must be more than 0, got -2"),
        (["--chunk-seconds", "soon"], "--chunk-seconds takes a number of seconds, got 'soon'"),
        (["--workers", "0"], "--workers must be at least 1, got 0"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, capsys, args, message):
    src = make_video(tmp_path / "in.mp4", frames=2, h=16, w=16, audio=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["video", str(src), "-o", str(tmp_path / "o.mp4"), "--cluster", "auto", *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(VideoError, match="the chunk length must be more than 0 seconds, got 0"):
        plan_chunks(src, 0)


def test_what_cannot_be_cut_is_refused_with_a_clear_error(tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "photo.png"
    Image.new("RGB", (16, 16)).save(image)
    base = ["--cluster", "auto", "--chunk-seconds", "1", "-q"]
    assert main(["video", str(image), "-o", str(tmp_path / "o.mp4"), *base]) == 2
    assert "is a still image, not a video; use espcn-fast upscale for images" in capsys.readouterr().err

    raw = make_video(tmp_path / "raw.h264", frames=4, h=16, w=16, audio=False)
    assert main(["video", str(raw), "-o", str(tmp_path / "o.mp4"), *base]) == 2
    assert "has no timestamps (a raw stream): it cannot be cut into chunks" in capsys.readouterr().err

    src = make_video(tmp_path / "in.mp4", frames=2, h=16, w=16, audio=False)
    (tmp_path / "taken.mp4").write_bytes(b"x")
    assert main(["video", str(src), "-o", str(tmp_path / "taken.mp4"), *base]) == 2
    assert "taken.mp4 exists; pass --overwrite to replace it" in capsys.readouterr().err
    with pytest.raises(VideoError, match="input not found"):
        upscale_video_on_cluster(tmp_path / "missing.mp4", tmp_path / "o.mp4", progress=False)
    assert not (tmp_path / "o.mp4.chunks").exists()
