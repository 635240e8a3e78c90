"""Quantization-aware training: straight-through gradients, the --qat flag, and resuming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from espcn_fast.evaluate import score_image
from espcn_fast.image_io import read_image
from espcn_fast.model import ESPCN
from espcn_fast.precision_model import PrecisionESPCN, model_weights
from espcn_fast.weights import load_weights
from training.train import main


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        *("--scale", "3", "--data", str(data), "--out", str(out), "--steps", "2", "--batch", "4"),
        *("--val-count", "1", "--threads", "1", "--lr", "1e-4", "--no-progress", *extra),
    ]


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_straight_through_gradients_reach_every_parameter(precision):
    model = ESPCN(3)
    x = torch.rand(2, 1, 9, 9)
    PrecisionESPCN(model, precision, straight_through=True)(x).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().gt(0).any()), name
    # the roundings themselves have no gradient: without straight-through, layer 2's weight gets none
    model.zero_grad(set_to_none=True)
    PrecisionESPCN(model, precision)(x).square().mean().backward()
    w2 = model_weights(model)[2]
    assert w2.grad is None or not bool(w2.grad.any())


def test_straight_through_computes_the_same_numbers():
    model = ESPCN.from_pretrained(3)
    x = torch.rand(1, 1, 12, 10)
    trained = PrecisionESPCN(model, "int8", straight_through=True)(x)
    assert torch.equal(trained.detach(), PrecisionESPCN(model, "int8")(x))
    assert not torch.equal(trained.detach(), model(x).detach())  # and it is not the float model


def test_qat_trains_and_validates_the_int8_model(train_dir, x3_init, tmp_path):
    out = tmp_path / "run"
    assert main(_args(train_dir, out, "--epochs", "2", "--qat", "int8", "--init", str(x3_init))) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and all(r["loss"] > 0 for r in records)
    best = ESPCN(3)
    best.load_state_dict(load_weights(out / "best.safetensors"))
    assert not torch.equal(best.sub_pixel[0].bias, ESPCN.from_pretrained(3).sub_pixel[0].bias)  # it trained
    held_out = read_image(train_dir / "img0.png")
    int8 = score_image(PrecisionESPCN(best, "int8"), held_out, 3)[0]
    assert max(r["val_psnr"] for r in records) == pytest.approx(int8, abs=1e-9)
    assert score_image(best, held_out, 3)[0] != pytest.approx(int8, abs=1e-6)  # not the float model's


def test_resume_refuses_another_qat(train_dir, x3_init, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(_args(train_dir, out, "--epochs", "2", "--stop-after", "1", "--qat", "int8", "--init", str(x3_init))) == 0
    )
    capsys.readouterr()
    assert main(_args(train_dir, out, "--epochs", "2", "--resume")) == 2
    assert "--qat int8 (now none)" in capsys.readouterr().err
    assert main(_args(train_dir, out, "--epochs", "2", "--resume", "--qat", "bf16")) == 2
    assert "--qat int8 (now bf16)" in capsys.readouterr().err
    assert main(_args(train_dir, out, "--epochs", "2", "--resume", "--qat", "int8")) == 0


def test_distill_reproduces_the_init_model(train_dir, x3_init, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args(train_dir, out, "--epochs", "1", "--qat", "int8", "--distill", "--init", str(x3_init))) == 0
    distilled = json.loads((out / "log.jsonl").read_text())["loss"]
    plain = tmp_path / "plain"
    assert main(_args(train_dir, plain, "--epochs", "1", "--qat", "int8", "--init", str(x3_init))) == 0
    # the target is the float model's output, which the int8 model nearly is: far below the HR loss
    assert 0 < distilled < json.loads((plain / "log.jsonl").read_text())["loss"] / 10
    for missing in (["--init", str(x3_init)], ["--qat", "int8"]):  # without --qat, and without --init
        with pytest.raises(SystemExit) as exc:
            main(_args(train_dir, tmp_path / "x", "--epochs", "1", "--distill", *missing))
        assert exc.value.code == 2 and "--distill" in capsys.readouterr().err
