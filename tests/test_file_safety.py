"""Outputs written whole or not at all: odd file names and existing outputs, through the atomic writer and the CLI."""

from __future__ import annotations

import os
from pathlib import Path

from espcn_fast.atomic_write import replacing
from espcn_fast.cli import main
from espcn_fast.image_io import read_image, write_image
from tests.conftest import random_rgb


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
    assert "1 of 2 image(s) failed" in err
    assert (out / "a.png").read_bytes() == b"keep me" and read_image(out / "b.png").shape == (3, 20, 24)
