"""``espcn-fast`` end to end on real images, and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from espcn_fast import ESPCN
from espcn_fast.cli import main
from espcn_fast.color import rgb_to_y, rgb_to_ycbcr
from espcn_fast.image_io import read_image, write_image
from espcn_fast.metrics import psnr
from espcn_fast.resize import imresize, modcrop
from espcn_fast.weights import save_weights
from tests.conftest import random_rgb


def test_upscale_colour_image_end_to_end(data_dir, tmp_path):
    src = data_dir / "LR_bicubic" / "Set5" / "x3" / "butterfly.png"
    dst = tmp_path / "out.png"
    assert main(["upscale", str(src), "-o", str(dst), "--scale", "3", "-q"]) == 0
    lr, sr = read_image(src), read_image(dst)
    assert sr.shape == (3, lr.shape[1] * 3, lr.shape[2] * 3)
    # Y is the network's output (up to the 8-bit round trip of the colour conversion)...
    with torch.no_grad():
        expected_y = ESPCN.from_pretrained(3)(rgb_to_y(lr)[None])[0].clamp(0, 1) * 255
    assert psnr(rgb_to_y(sr) * 255, expected_y) > 45
    # ...and Cb/Cr are the bicubic upscale.
    expected_cbcr = imresize(rgb_to_ycbcr(lr)[1:], 3) * 255
    assert psnr(rgb_to_ycbcr(sr)[1:] * 255, expected_cbcr) > 40
    # and the result is closer to the HR image than bicubic is.
    hr = modcrop(read_image(data_dir / "Set5" / "butterfly.png"), 3)
    bicubic = imresize(lr, 3)
    hr_y = rgb_to_y(hr) * 255
    assert psnr(rgb_to_y(sr) * 255, hr_y, 3) > psnr(rgb_to_y(bicubic) * 255, hr_y, 3) + 0.5


def test_upscale_grey_image_and_folder(data_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(read_image(data_dir / "LR_bicubic" / "Set14" / "x2" / "bridge.png", mode="keep"), folder / "bridge.png")
    write_image(random_rgb(21, 17), folder / "odd.png")
    out = tmp_path / "out"
    assert main(["upscale", str(folder), "-o", str(out), "--scale", "2", "-q"]) == 0
    grey = read_image(out / "bridge.png", mode="keep")
    assert grey.shape == (1, 2 * 256, 2 * 256)
    assert read_image(out / "odd.png").shape == (3, 42, 34)


def test_bad_file_among_good_ones_is_skipped(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(random_rgb(12, 10), folder / "good.png")
    (folder / "bad.png").write_text("not an image")
    out = tmp_path / "out"
    assert main(["upscale", str(folder), "-o", str(out), "--scale", "2", "-q"]) == 1
    err = capsys.readouterr().err
    assert "bad.png" in err and "1 failed, of 2 image(s)" in err
    assert (out / "good.png").is_file() and not (out / "bad.png").exists()


def test_refuses_to_overwrite_input(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(random_rgb(12, 10), folder / "a.png")
    before = (folder / "a.png").read_bytes()
    assert main(["upscale", str(folder), "-o", str(folder), "-q"]) == 2
    assert "refusing to overwrite the input" in capsys.readouterr().err
    assert (folder / "a.png").read_bytes() == before


def test_upscale_with_weights_file_of_other_scale(tmp_path, capsys):
    save_weights(ESPCN(2).state_dict(), tmp_path / "x2.safetensors")
    write_image(random_rgb(12, 10), tmp_path / "a.png")
    code = main(
        [
            "upscale",
            str(tmp_path / "a.png"),
            "-o",
            str(tmp_path / "o.png"),
            "--scale",
            "3",
            "--weights",
            str(tmp_path / "x2.safetensors"),
        ]
    )
    assert code == 2
    assert "weights for scale 2, not --scale 3" in capsys.readouterr().err


@pytest.mark.parametrize("content,match", [(None, "input not found"), (b"hello", "not an image")])
def test_upscale_missing_or_non_image_input(tmp_path, capsys, content, match):
    src = tmp_path / "x.png"
    if content is not None:
        src.write_bytes(content)
    code = main(["upscale", str(src), "-o", str(tmp_path / "o.png")])
    assert code == (2 if content is None else 1)
    assert match in capsys.readouterr().err


def test_eval_table_and_json(data_dir, tmp_path, capsys):
    out = tmp_path / "scores.json"
    assert main(["eval", "--scale", "3", "--sets", "Set5", "--json", str(out), "-q"]) == 0
    table = capsys.readouterr().out
    assert "| x3 | Set5 |" in table and "32.55" in table
    scores = json.loads(out.read_text())["x3"]["Set5"]
    assert set(scores["images"]) == {"baby", "bird", "butterfly", "head", "woman"}
    assert 30.0 < scores["psnr"] < 40.0 and 0.8 < scores["ssim"] < 1.0


def test_eval_missing_data_folder(tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path / "nope"), "-q"]) == 2
    assert "data folder not found" in capsys.readouterr().err


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "espcn_fast", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "upscale" in result.stdout and "eval" in result.stdout


def test_demo(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "demo_x3.png").is_file()
    assert "| x3 | Set14 |" in out or "skipping" in out


def test_upscale_backends_agree(tmp_path):
    write_image(random_rgb(20, 24), tmp_path / "a.png")
    for backend in ("torch", "auto"):
        code = main(
            [
                "upscale",
                str(tmp_path / "a.png"),
                "-o",
                str(tmp_path / f"{backend}.png"),
                "--scale",
                "2",
                "--backend",
                backend,
                "-q",
            ]
        )
        assert code == 0
    difference = read_image(tmp_path / "torch.png").int() - read_image(tmp_path / "auto.png").int()
    assert difference.abs().max() <= 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where there is no GPU")
def test_upscale_unavailable_backend(tmp_path, capsys):
    write_image(random_rgb(12, 10), tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "o.png"), "--backend", "cuda"]) == 2
    assert "backend 'cuda' is not available" in capsys.readouterr().err


def test_unwritable_output_is_reported(tmp_path, capsys):
    write_image(random_rgb(12, 10), tmp_path / "a.png")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["upscale", str(tmp_path / "a.png"), "-o", str(blocker / "sub" / "o.png"), "-q"])
    assert code == 1
    assert "cannot write" in capsys.readouterr().err


def test_upscale_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["upscale", str(tmp_path / "empty"), "-o", str(tmp_path / "out")]) == 2
    assert "no images in folder" in capsys.readouterr().err


def test_upscale_in_tiles_gives_the_same_image(tmp_path, capsys):
    src = tmp_path / "a.png"
    write_image(random_rgb(45, 70, seed=9), src)
    assert main(["upscale", str(src), "-o", str(tmp_path / "whole.png"), "--scale", "3", "-q"]) == 0
    assert main(["upscale", str(src), "-o", str(tmp_path / "tiled.png"), "--scale", "3", "--tile", "16", "-q"]) == 0
    assert torch.equal(read_image(tmp_path / "whole.png"), read_image(tmp_path / "tiled.png"))
    with pytest.raises(SystemExit):
        main(["upscale", str(src), "-o", str(tmp_path / "x.png"), "--tile", "8"])
    assert "--tile must be at least 16 LR pixels, got 8" in capsys.readouterr().err


@pytest.mark.parametrize(
    "device, match",
    [
        ("gpu", "--device gpu: not a device name"),
        ("mps", "--device mps: only cpu and cuda are supported"),
        ("cuda:7", "--device cuda:7: (no CUDA GPU is available here|this machine has)"),
    ],
)
def test_bad_device_is_a_one_line_error(tmp_path, capsys, device, match):
    import re

    write_image(random_rgb(12, 10), tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "o.png"), "--device", device]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(match, err), err
    assert not (tmp_path / "o.png").exists()


def test_backend_for_another_device_fails_before_the_job(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    write_image(random_rgb(12, 10), tmp_path / "a.png")
    assert (
        main(
            [
                "upscale",
                str(tmp_path / "a.png"),
                "-o",
                str(tmp_path / "o.png"),
                "--device",
                "cpu",
                "--backend",
                "triton",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "backend 'triton' runs CUDA tensors" in err or "backend 'triton' is not available" in err, err


def test_demo_without_data_or_scikit_image(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)  # import skimage raises ImportError
    assert main(["demo", "-o", str(tmp_path), "--data", str(tmp_path / "no-data")]) == 2
    assert "pass --data DIR or pip install scikit-image" in capsys.readouterr().err


def test_output_paths_the_system_refuses_are_one_line_errors(tmp_path, capsys):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    # --json is checked before the (long) evaluation, not after it.
    assert main(["eval", "--data", str(tmp_path / "nowhere"), "--json", str(folder), "-q"]) == 2
    assert f"--json {folder} is a folder; give a file name" in capsys.readouterr().err
    assert main(["eval", "--json", str(tmp_path / "no" / "t.json"), "-q"]) == 2
    assert "the folder" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("x")
    assert main(["demo", "-o", str(tmp_path / "a_file"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("espcn-fast: error: File exists") and "Traceback" not in err and err.count("\n") == 1


def test_an_image_too_large_for_memory_is_skipped(tmp_path, capsys, monkeypatch):
    import espcn_fast.file_job as file_job

    for name, size in (("big.png", 20), ("small.png", 8)):
        write_image(random_rgb(size, size, seed=size), tmp_path / name)
    real = file_job.upscale_image

    def upscale(image, *args, **kwargs):
        if image.shape[-1] == 20:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
        return real(image, *args, **kwargs)

    monkeypatch.setattr(file_job, "upscale_image", upscale)
    out = tmp_path / "out"
    assert (
        main(
            ["upscale", str(tmp_path / "big.png"), str(tmp_path / "small.png"), "-o", str(out), "-q", "--device", "cpu"]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "big.png (20x20): out of memory; try --tile 512" in err and "1 failed, of 2 image(s)" in err
    assert (out / "small.png").exists() and not (out / "big.png").exists()
    monkeypatch.setattr(file_job, "upscale_image", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a real bug")))
    with pytest.raises(RuntimeError, match="a real bug"):  # other errors are not swallowed
        main(["upscale", str(tmp_path / "small.png"), "-o", str(tmp_path / "o2"), "-q", "--device", "cpu"])


def test_eval_refuses_a_half_given_lr_set_and_names_bad_images(data_dir, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(data_dir / "Set5", data / "Set5")
    lr = data / "LR_bicubic" / "Set5" / "x3"
    lr.mkdir(parents=True)
    for name in ("baby.png", "bird.png"):  # three of the five standard LR files are missing
        shutil.copy(data_dir / "LR_bicubic" / "Set5" / "x3" / name, lr / name)
    assert main(["eval", "--scale", "3", "--sets", "Set5", "--data", str(data), "-q", "--device", "cpu"]) == 2
    assert "lacks butterfly.png, head.png, woman.png" in capsys.readouterr().err
    # An LR file of the wrong size: the error names it.
    for name in ("butterfly.png", "head.png", "woman.png"):
        shutil.copy(data_dir / "LR_bicubic" / "Set5" / "x3" / name, lr / name)
    shutil.copy(data_dir / "LR_bicubic" / "Set5" / "x3" / "baby.png", lr / "bird.png")
    assert main(["eval", "--scale", "3", "--sets", "Set5", "--data", str(data), "-q", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "bird.png: LR image" in err and "is not HR" in err


def test_eval_json_on_a_full_disk_keeps_the_earlier_file(tmp_path):
    """A write cut short (a full disk; here a file-size limit) leaves the earlier scores whole and names the file."""
    out = tmp_path / "scores.json"
    out.write_text('{"earlier": "scores"}\n')
    script = f"""
import resource, signal, sys
import espcn_fast.cli as cli
from espcn_fast.evaluate import ImageScore, SetScore

def fake_sets(model, scale, sets, data, progress=True):
    images = [ImageScore(f"img{{i:04d}}", 30.0 + i / 7, 0.9) for i in range(400)]
    return [SetScore("Set5", images)]

cli.evaluate_sets = fake_sets
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
sys.exit(cli.main(["eval", "--scale", "3", "--json", {str(out)!r}, "-q", "--device", "cpu"]))
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert f"cannot write {out}: File too large" in run.stderr
    assert out.read_text() == '{"earlier": "scores"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.json"]  # no temporary left


@pytest.mark.parametrize("suffix", [".gif", ".ICO", ".jp2", ".tga"])
def test_an_output_file_in_a_format_not_written_is_refused(tmp_path, capsys, suffix):
    src = tmp_path / "one.png"
    write_image(random_rgb(10, 12), src)
    out = tmp_path / f"result{suffix}"
    for inputs in ([src], [src, src.with_name("two.png")]):
        write_image(random_rgb(10, 12), src.with_name("two.png"))
        assert main(["upscale", *map(str, inputs), "-o", str(out), "--scale", "2", "-q", "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("espcn-fast: error: ")
        assert f"{suffix} is not a format espcn-fast writes" in err and ".png, .bmp, .jpg" in err
        assert not out.exists()


@pytest.mark.parametrize("name", ["result", "result.d", "v1.2"])
def test_an_output_without_an_image_suffix_is_a_folder(tmp_path, name):
    src = tmp_path / "one.png"
    write_image(random_rgb(10, 12), src)
    out = tmp_path / name
    assert main(["upscale", str(src), "-o", str(out), "--scale", "2", "-q", "--device", "cpu"]) == 0
    assert read_image(out / "one.png").shape == (3, 20, 24)


def _cpu_runs(precision: str) -> bool:
    from espcn_fast import ops

    try:
        return ops.cpu_isa(precision) is not None
    except RuntimeError:
        return False


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_upscale_in_reduced_precision_on_the_cpu(tmp_path, precision):
    if not _cpu_runs(precision):
        pytest.skip(f"this CPU has no {precision} kernels")
    write_image(random_rgb(24, 20), tmp_path / "a.png")
    for p in ("fp32", precision):
        args = ["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / f"{p}.png"), "--scale", "3", "-q"]
        assert main([*args, "--precision", p]) == 0
    # bf16 rounds the fp32 network's values; int8 runs its own weights: close to fp32, not equal.
    fp32, other = read_image(tmp_path / "fp32.png").float(), read_image(tmp_path / f"{precision}.png").float()
    assert psnr(other / 255, fp32 / 255) > 35


def test_reduced_precision_errors_are_one_line(tmp_path, capsys, monkeypatch):
    write_image(random_rgb(12, 10), tmp_path / "a.png")
    args = ["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "o.png"), "--scale", "3", "-q"]
    monkeypatch.setenv("ESPCN_FAST_CPU_ISA", "portable")
    assert main([*args, "--precision", "int8"]) == 2
    err = capsys.readouterr().err
    assert "precision 'int8' on the CPU needs AVX512-VNNI or AVX-VNNI (vpdpbusd)" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.png").exists()
