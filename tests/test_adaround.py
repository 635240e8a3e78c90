"""Learned rounding of the int8 weights (training.adaround): the grid, the kept scales, the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from espcn_fast.model import A1_RANGES_KEY, ESPCN
from espcn_fast.precision_model import PrecisionESPCN
from espcn_fast.reduced_precision import quantize_weight, weight_scales
from espcn_fast.weights import load_weights, save_weights
from training.a1_ranges import calibrate_a1_ranges
from training.adaround import (
    AdaRoundESPCN,
    AdaRoundWeight,
    beta_at,
    main,
    rounding_regularizer,
    weights_on_grid,
)
from training.data import load_folder, split_validation
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
    assert (
        main(_args(train_dir, x3_init, out, "--teacher", str(x3_init), "--warmup", "0.5", "--a1-ranges", "full")) == 0
    )
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 2, 4]
    start = load_weights(x3_init)
    for name in ("best", "last"):
        state = load_weights(out / f"{name}.safetensors")
        assert torch.equal(state[A1_RANGES_KEY], torch.ones(64))
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


def test_command_calibrates_the_layer1_ranges(train_dir, x3_init, tmp_path):
    """By default layer 1's int8 ranges are calibrated on the training images; layer 2 is rounded as
    its weights times them, which the written weights reproduce in the kernels' quantization."""
    out = tmp_path / "run"
    assert main(_args(train_dir, x3_init, out, "--warmup", "0.5")) == 0
    start, state = load_weights(x3_init), load_weights(out / "last.safetensors")
    ranges = state[A1_RANGES_KEY]
    train_images, _ = split_validation(load_folder(train_dir), 1)
    w1, b1 = start["feature_maps.0.weight"], start["feature_maps.0.bias"]
    assert torch.equal(ranges, calibrate_a1_ranges(w1, b1, 3, train_images))
    assert bool((ranges < 1).any()) and bool((ranges > 0).all())
    scaled = lambda w: w * ranges[None, :, None, None]  # noqa: E731
    s_start = weight_scales(scaled(start["feature_maps.2.weight"]))
    s_out = weight_scales(scaled(state["feature_maps.2.weight"]))
    torch.testing.assert_close(s_out, s_start, rtol=2e-7, atol=0)  # the peak divided by its range and back
    torch.testing.assert_close(
        state["sub_pixel.0.weight"].abs().amax((1, 2, 3)),
        start["sub_pixel.0.weight"].abs().amax((1, 2, 3)),
        rtol=0,
        atol=0,
    )
    # the written model is the run's hard rounding, scored as the kernels compute it
    model = ESPCN(3)
    model.load_state_dict(state)
    assert torch.equal(model.a1_ranges, ranges)
    x = torch.rand(1, 1, 10, 9)
    with torch.no_grad():
        with_ranges = PrecisionESPCN(model, "int8", dtype=torch.float64)(x)
        model.a1_ranges = None
        without = PrecisionESPCN(model, "int8", dtype=torch.float64)(x)
    assert float((with_ranges - without).abs().max()) > 1e-3  # the ranges are part of the model


def test_rounding_with_ranges_is_the_int8_model():
    """With layer-1 ranges, the decided soft model is the hard state dict run in the int8 arithmetic."""
    torch.manual_seed(5)
    ranges = torch.rand(64) * 0.8 + 0.2
    net = AdaRoundESPCN(ESPCN(2), ranges)
    for weight in (net.w2, net.w3):
        with torch.no_grad():
            weight.v.copy_(torch.where(torch.rand_like(weight.v) < 0.5, -10.0, 10.0))
    reference = ESPCN(2)
    reference.load_state_dict(net.hard_state_dict())
    assert torch.equal(reference.a1_ranges, ranges)
    q = quantize_weight(reference.feature_maps[2].weight.detach() * ranges[None, :, None, None])[0]
    assert torch.equal(q.to(torch.float32), net.w2.hard_q())
    x = torch.rand(1, 1, 8, 7)
    with torch.no_grad():
        torch.testing.assert_close(net(x), PrecisionESPCN(reference, "int8")(x), rtol=0, atol=1e-5)


def test_command_keeps_the_init_ranges_or_says_they_are_missing(train_dir, x3_init, tmp_path, capsys):
    assert main(_args(train_dir, x3_init, tmp_path / "a", "--a1-ranges", "init")) == 2
    assert f"--a1-ranges init: {x3_init} holds no a1_ranges" in capsys.readouterr().err
    ranged = tmp_path / "ranged.safetensors"
    ranges = torch.linspace(0.3, 1.0, 64)
    save_weights({**load_weights(x3_init), A1_RANGES_KEY: ranges}, ranged)
    assert main(_args(train_dir, ranged, tmp_path / "b", "--a1-ranges", "init")) == 0
    assert torch.equal(load_weights(tmp_path / "b" / "last.safetensors")[A1_RANGES_KEY], ranges)
