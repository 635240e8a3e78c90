"""Training: smoke run, exact resume, two-process DDP, and bad inputs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from espcn_fast.image_io import write_image
from tests.conftest import random_rgb
from training.train import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for i, (h, w) in enumerate([(70, 64), (66, 80), (90, 72), (64, 64)]):
        write_image(random_rgb(h, w, seed=i), folder / f"img{i}.png")
    return folder


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--scale", "3", "--data", str(data), "--out", str(out), "--steps", "3", "--batch", "4",
            "--val-count", "1", "--threads", "1", "--no-progress", *extra]


def test_smoke(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert main(_args(tiny_data, out, "--epochs", "2")) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(r["loss"] > 0 and r["val_psnr"] > 0 for r in records)
    for name in ("last.pt", "best.pt", "best.safetensors", "last.safetensors"):
        assert (out / name).is_file(), name
    assert not list(out.glob(".*.tmp")), "temporary files left behind"


def test_resume_is_exact(tiny_data, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(_args(tiny_data, straight, "--epochs", "3")) == 0
    assert main(_args(tiny_data, resumed, "--epochs", "3", "--stop-after", "1")) == 0
    assert len((resumed / "log.jsonl").read_text().splitlines()) == 1
    assert main(_args(tiny_data, resumed, "--epochs", "3", "--resume")) == 0
    a, b = load_file(straight / "last.safetensors"), load_file(resumed / "last.safetensors")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # and the run really trained: the weights moved from their initial values
    assert not torch.equal(a["sub_pixel.0.bias"], torch.zeros_like(a["sub_pixel.0.bias"]))


def test_resume_with_other_settings_is_refused(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args(tiny_data, out, "--epochs", "2", "--stop-after", "1")) == 0
    assert main(_args(tiny_data, out, "--epochs", "2", "--resume", "--batch", "8")) == 2
    assert "--batch" in capsys.readouterr().err


def test_resume_without_checkpoint(tiny_data, tmp_path, capsys):
    assert main(_args(tiny_data, tmp_path / "none", "--epochs", "1", "--resume")) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_with_gloo_stays_in_sync(tiny_data, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "training.train", *_args(tiny_data, out, "--epochs", "2", "--device", "cpu",
                                          "--save-rank-weights")]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["ranks_in_sync"] for r in records] == [True, True]
    r0, r1 = load_file(out / "rank0.safetensors"), load_file(out / "rank1.safetensors")
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key
    ckpt = torch.load(out / "last.pt", weights_only=True)
    # each process drew its own patches
    assert len(ckpt["samplers"]) == 2
    assert not torch.equal(ckpt["samplers"][0]["generator"], ckpt["samplers"][1]["generator"])


def test_missing_data_folder(tmp_path, capsys):
    assert main(_args(tmp_path / "nope", tmp_path / "out", "--epochs", "1")) == 2
    assert "training data folder not found" in capsys.readouterr().err


def test_empty_data_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(_args(tmp_path / "empty", tmp_path / "out", "--epochs", "1")) == 2
    assert "no images in training data folder" in capsys.readouterr().err


def test_unreadable_image(tiny_data, tmp_path, capsys):
    (tiny_data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert main(_args(tiny_data, tmp_path / "out", "--epochs", "1")) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "not an image or a corrupt file" in err


def test_crop_larger_than_images(tiny_data, tmp_path, capsys):
    assert main(_args(tiny_data, tmp_path / "out", "--epochs", "1", "--patch", "40")) == 2
    assert "larger than every training image" in capsys.readouterr().err


@pytest.mark.parametrize("flag,value", [("--scale", "0"), ("--epochs", "0"), ("--batch", "-1")])
def test_bad_numbers(tiny_data, tmp_path, capsys, flag, value):
    args = _args(tiny_data, tmp_path / "out", "--epochs", "1")
    args += [flag, value]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert f"{flag} must be" in capsys.readouterr().err


def test_init_from_weights(tiny_data, tmp_path, capsys):
    first = tmp_path / "first"
    assert main(_args(tiny_data, first, "--epochs", "1")) == 0
    second = tmp_path / "second"
    assert main(_args(tiny_data, second, "--epochs", "1", "--init", str(first / "last.safetensors"))) == 0
    x2 = tmp_path / "x2.safetensors"
    from espcn_fast import ESPCN
    from espcn_fast.weights import save_weights

    save_weights(ESPCN(2).state_dict(), x2)
    assert main(_args(tiny_data, tmp_path / "third", "--epochs", "1", "--init", str(x2))) == 2
    assert "weights are for scale 2 but the model is for scale 3" in capsys.readouterr().err
