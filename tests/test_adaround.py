"""Learned rounding of the int8 weights (training.adaround): the grid, the kept scales, the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from espcn_fast.model import ESPCN
from espcn_fast.precision_model import PrecisionESPCN
from espcn_fast.reduced_precision import quantize_weight, weight_scales
from espcn_fast.weights import load_weights, save_weights
from training.adaround import (
    AdaRoundESPCN,
    AdaRoundWeight,
    beta_at,
    main,
    rounding_regularizer,
    weights_on_grid,
)
from training.ship_int8 import ship


def _random_weight(c_out: int = 6, c_in: int = 4, k: int = 3) -> torch.Tensor:
    w = torch.randn(c_out, c_in, k, k) * 0.05
    # A tie (w / s = n + 0.5) in every channel: the start must round it as the kernels do, half to even.
    s = weight_scales(w)
    w[:, 0, 0, 0] = (torch.arange(c_out, dtype=torch.float32) % 5 + 2.5) * s
    return w


def _randomize(weight: AdaRoundWeight) -> None:
    with torch.no_grad():
        weight.v.copy_(torch.randn_like(weight.v) * 4)


def test_the_start_is_the_kernels_rounding():
    w = _random_weight()
    q, s = quantize_weight(w)
    ada = AdaRoundWeight(w)
    assert torch.equal(ada.hard_q(), q.to(torch.float32))
    assert torch.equal(quantize_weight(ada.hard())[0], q)
    assert torch.equal(weight_scales(ada.hard()), s)
    # the soft weight starts at the weight (up to the nudge that settles the ties)
    assert torch.allclose(ada.soft(), w, atol=2e-3 * float(s.max()))


def test_any_rounding_keeps_the_scales_and_lies_on_the_grid():
    w = _random_weight()
    ada = AdaRoundWeight(w)
    _randomize(ada)
    hard = ada.hard()
    q, s = quantize_weight(hard)
    # The kernels recompute max |w| / 127 from the written weights: bit for bit the start's.
    assert torch.equal(s, weight_scales(w))
    assert torch.equal(q.to(torch.float32), ada.hard_q())
    # Each element rounds down or up from w / s, never further; the peaks stay where they were.
    step = ada.hard_q() - torch.floor(w / s[:, None, None, None])
    learned = ~ada.fixed
    assert bool(((step[learned] == 0) | (step[learned] == 1)).all())
    assert bool(((step[learned] == 0).any()) and bool((step[learned] == 1).any()))
    assert torch.equal(hard[ada.fixed], w[ada.fixed])
    # Off the peaks the written weight is q * s exactly.
    inner = q.abs() < 127
    assert torch.equal(hard[inner], (q.to(torch.float32) * s[:, None, None, None])[inner])


def test_weights_on_grid_never_exceed_the_peak():
    w = _random_weight()
    q, s = quantize_weight(w)
    peaks = w.abs().amax(dim=(1, 2, 3))
    q = q.to(torch.float32)
    q[:, 1, 1, 1] = 127.0  # a second full-scale element in every channel
    q[:, 2, 0, 0] = -127.0
    out = weights_on_grid(q, s, peaks)
    assert torch.equal(weight_scales(out), s)
    assert torch.equal(quantize_weight(out)[0].to(torch.float32), q)


def test_gradients_reach_the_rounding_and_the_float_parameters():
    net = AdaRoundESPCN(ESPCN(3))
    x = torch.rand(2, 1, 9, 9)
    (net(x).square().mean() + net.regularizer(2.0) / net.rounded_elements()).backward()
    for p in net.rounding_parameters() + net.float_parameters():
        assert p.grad is not None and bool(p.grad.abs().gt(0).any())


def test_decided_soft_model_is_the_int8_model():
    torch.manual_seed(3)
    net = AdaRoundESPCN(ESPCN(2))
    for weight in (net.w2, net.w3):
        with torch.no_grad():  # every h at 0 or 1: the soft and hard roundings agree
            weight.v.copy_(torch.where(torch.rand_like(weight.v) < 0.5, -10.0, 10.0))
    assert net.undecided() == 0
    x = torch.rand(1, 1, 8, 7)
    reference = ESPCN(2)
    reference.load_state_dict(net.hard_state_dict())
    with torch.no_grad():
        torch.testing.assert_close(net(x), PrecisionESPCN(reference, "int8")(x), rtol=0, atol=1e-6)


def test_regularizer():
    h = torch.tensor([0.0, 1.0, 0.5, 0.9])
    assert rounding_regularizer(h[:2], 2.0).item() == 0.0
    assert rounding_regularizer(h[2:3], 2.0).item() == 1.0
    # a high beta leaves the middle almost free
    assert rounding_regularizer(h[3:], 20.0).item() > rounding_regularizer(h[3:], 2.0).item()


def test_beta_schedule():
    assert beta_at(0, 100, 0.2, 20.0, 2.0) is None
    assert beta_at(19, 100, 0.2, 20.0, 2.0) is None
    assert beta_at(20, 100, 0.2, 20.0, 2.0) == 20.0
    assert beta_at(100, 100, 0.2, 20.0, 2.0) == 2.0
    assert 2.0 < beta_at(60, 100, 0.2, 20.0, 2.0) < 20.0


@pytest.mark.parametrize(
    ("weight", "message"),
    [
        (torch.ones(4, 3), "conv weight"),
        (torch.cat([torch.zeros(1, 2, 3, 3), torch.ones(1, 2, 3, 3)]), "all zero"),
        (torch.full((2, 2, 3, 3), float("nan")), "NaN"),
    ],
)
def test_bad_weights(weight, message):
    with pytest.raises(ValueError, match=message):
        AdaRoundWeight(weight)


def _args(data: Path, init: Path, out: Path, *extra: str) -> list[str]:
    return [
        *("--scale", "3", "--data", str(data), "--init", str(init), "--out", str(out)),
        *("--steps", "4", "--batch", "2", "--val-count", "1", "--val-every", "2", "--threads", "1", *extra),
    ]


def test_command_writes_int8_weights_with_the_init_scales(train_dir, x3_init, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args(train_dir, x3_init, out, "--teacher", str(x3_init), "--warmup", "0.5")) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 2, 4]
    start = load_weights(x3_init)
    for name in ("best", "last"):
        state = load_weights(out / f"{name}.safetensors")
        for key in ("feature_maps.2.weight", "sub_pixel.0.weight"):
            assert torch.equal(weight_scales(state[key]), weight_scales(start[key]))
    shipped = tmp_path / "shipped.safetensors"
    ship(out / "best.safetensors", 3, shipped)  # the scales it stores are checked on loading
    ESPCN(3).load_state_dict(load_weights(shipped))
    # a second run into the same folder is refused
    assert main(_args(train_dir, x3_init, out)) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_command_init_of_another_scale(train_dir, tmp_path, capsys):
    other = tmp_path / "x2.safetensors"
    save_weights(ESPCN(2).state_dict(), other)
    assert main(_args(train_dir, other, tmp_path / "run")) == 2
    assert "scale" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--steps", "0", "--steps must be >= 1"),
        ("--reg", "-1", "--reg must be >= 0"),
        ("--lr", "nan", "--lr must be >= 0"),
        ("--warmup", "1", "--warmup must be in [0, 1)"),
        ("--beta", "0", "--beta must be positive"),
    ],
)
def test_bad_arguments(train_dir, x3_init, tmp_path, capsys, flag, value, message):
    extra = [flag, value, "2"] if flag == "--beta" else [flag, value]
    with pytest.raises(SystemExit) as exc:
        main(_args(train_dir, x3_init, tmp_path / "run", *extra))
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
