"""Outputs written whole or not at all: odd file names, existing outputs and SIGTERM, through the CLI."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from espcn_fast.atomic_write import replacing
from espcn_fast.cli import main
from espcn_fast.image_io import read_image, write_image
from tests.conftest import random_rgb

ROOT = Path(__file__).resolve().parent.parent


def test_a_name_that_is_not_utf8_is_written(tmp_path):
    target = Path(os.fsdecode(bytes(tmp_path) + b"/b_\xff\xfe.png"))
    with replacing(target) as tmp:
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    assert os.listdir(bytes(tmp_path)) == [b"b_\xff\xfe.png"]


def test_a_long_name_keeps_the_suffix_asked_for(tmp_path):
    target = tmp_path / ("v" * 240 + ".mp4")  # 244 bytes: valid, with room for no more than 11
    with replacing(target, suffix=".mp4") as tmp:
        assert tmp.name.endswith(".mp4") and tmp.name.startswith(".v") and len(os.fsencode(tmp.name)) <= 255
        tmp.write_bytes(b"video")
    assert target.read_bytes() == b"video" and len(list(tmp_path.iterdir())) == 1


def test_a_cut_name_does_not_split_a_character(tmp_path):
    target = tmp_path / ("a" + "é" * 120 + ".png")  # 245 bytes: cut in the middle of the é's
    with replacing(target) as tmp:
        assert "\udcc3" not in tmp.name  # no half character (a surrogate escape of its lead byte)
        tmp.write_bytes(b"x")
    assert target.read_bytes() == b"x"


def test_a_folder_with_a_name_that_is_not_utf8_is_upscaled_whole(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    names = [b"a.png", b"b_\xff\xfe.png", b"c.png"]
    for i, name in enumerate(names):
        write_image(random_rgb(10, 12, seed=i), os.fsdecode(bytes(folder) + b"/" + name))
    out = tmp_path / "out"
    assert main(["upscale", str(folder), "-o", str(out), "--scale", "2", "--device", "cpu"]) == 0
    assert sorted(os.listdir(bytes(out))) == names
    assert read_image(os.fsdecode(bytes(out) + b"/b_\xff\xfe.png")).shape == (3, 20, 24)
    printed = capsys.readouterr().out
    assert printed.count(" -> ") == 3 and "b_" in printed


def test_upscale_refuses_an_existing_output_file_unless_asked(tmp_path, capsys):
    src, dst = tmp_path / "a.png", tmp_path / "o.png"
    write_image(random_rgb(10, 12), src)
    dst.write_bytes(b"keep me")
    assert main(["upscale", str(src), "-o", str(dst), "--scale", "2", "-q", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"espcn-fast: error: {dst} exists; pass --overwrite to replace it"
    assert dst.read_bytes() == b"keep me"
    assert main(["upscale", str(src), "-o", str(dst), "--scale", "2", "-q", "--device", "cpu", "--overwrite"]) == 0
    assert read_image(dst).shape == (3, 20, 24)


def test_a_folder_run_skips_and_reports_existing_outputs(tmp_path, capsys):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    for name in ("a.png", "b.png"):
        write_image(random_rgb(10, 12), folder / name)
    (out / "a.png").write_bytes(b"keep me")
    assert main(["upscale", str(folder), "-o", str(out), "--scale", "2", "-q", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert f"skipped: {out / 'a.png'} exists; pass --overwrite to replace it" in err
    assert "1 skipped, their outputs there already, of 2 image(s)" in err
    assert (out / "a.png").read_bytes() == b"keep me" and read_image(out / "b.png").shape == (3, 20, 24)


# The job is made slow at the moment its temporary file exists, so that SIGTERM comes mid-write.
_SLOW_IMAGE_WRITE = """
import sys, time
import PIL.Image
real = PIL.Image.Image.save
def save(self, fp, *args, **kwargs):
    real(self, fp, *args, **kwargs)
    time.sleep(60)
PIL.Image.Image.save = save
from espcn_fast.cli import main
sys.exit(main(sys.argv[1:]))
"""


def terminated(command: list[str], folder: Path, pattern: str) -> subprocess.CompletedProcess:
    """Runs ``command``, sends SIGTERM once a file matching ``pattern`` appears in ``folder``, and waits."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(folder.glob(pattern)):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"no {pattern} appeared (exit {process.returncode}): {err[-2000:]}")
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("still running 60 s after SIGTERM")
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def test_sigterm_during_upscale_leaves_no_temporary_file_and_the_old_output(tmp_path):
    src, dst = tmp_path / "big.png", tmp_path / "out" / "big.png"
    write_image(random_rgb(40, 48), src)
    dst.parent.mkdir()
    dst.write_bytes(b"the previous output")
    command = [
        sys.executable,
        "-c",
        _SLOW_IMAGE_WRITE,
        "upscale",
        str(src),
        "-o",
        str(dst),
        "--scale",
        "2",
        "--device",
        "cpu",
        "-q",
        "--overwrite",
    ]
    result = terminated(command, dst.parent, ".big.png.*.tmp")
    assert result.returncode == 143, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "espcn-fast: terminated"
    assert sorted(p.name for p in dst.parent.iterdir()) == ["big.png"]
    assert dst.read_bytes() == b"the previous output"


_SLOW_VIDEO = """
import sys, time
from espcn_fast import video
real = video._Network.finish
def finish(self, handle):
    if len(handle[0]) and finish.calls == 30:
        time.sleep(60)
    finish.calls += 1
    return real(self, handle)
finish.calls = 0
video._Network.finish = finish
from espcn_fast.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_during_video_leaves_no_temporary_file_and_the_old_output(tmp_path):
    pytest.importorskip("av")
    from espcn_fast.benchmark.synthetic_video import make_video

    src = make_video(tmp_path / "in.mp4", frames=40, audio=False)
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "clip.mp4"
    dst.write_bytes(b"the previous output")
    command = [
        sys.executable,
        "-c",
        _SLOW_VIDEO,
        "video",
        str(src),
        "-o",
        str(dst),
        "--scale",
        "2",
        "--device",
        "cpu",
        "--batch",
        "1",
        "-q",
        "--overwrite",
    ]
    result = terminated(command, out, ".clip*")
    assert result.returncode == 143, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "espcn-fast: terminated"
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4"]
    assert dst.read_bytes() == b"the previous output"


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_every_output_follows_the_umask(tmp_path, umask):
    """Whatever mode a writer creates its file with (safetensors' is 0600), the output gets 0666 less the umask."""
    from espcn_fast import ESPCN
    from espcn_fast.weights import save_weights
    from training.checkpoint import save_atomic

    previous = os.umask(umask)
    try:
        save_weights(ESPCN(2).state_dict(), tmp_path / "w.safetensors")
        save_atomic({"epoch": 1}, tmp_path / "c.pt")
        write_image(random_rgb(4, 4), tmp_path / "i.png")
        with replacing(tmp_path / "private.json") as tmp:
            os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600))
    finally:
        os.umask(previous)
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in tmp_path.iterdir()}
    expected = oct(0o666 & ~umask)
    assert modes == dict.fromkeys(["w.safetensors", "c.pt", "i.png", "private.json"], expected)
