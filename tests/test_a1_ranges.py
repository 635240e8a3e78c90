"""Calibration of int8's layer-1 ranges (training.a1_ranges) on the training images."""

from __future__ import annotations

import pytest
import torch

from espcn_fast.color import rgb_to_y
from espcn_fast.evaluate import make_lr
from espcn_fast.model import A1_RANGES_KEY
from espcn_fast.weights import load_weights
from training.a1_ranges import calibrate_a1_ranges, main
from training.data import load_folder, split_validation

from .conftest import random_rgb


def test_ranges_are_the_largest_tanh_of_each_channel():
    g = torch.Generator().manual_seed(1)
    w1, b1 = torch.randn(8, 1, 5, 5, generator=g) * 0.2, torch.randn(8, generator=g) * 0.2
    w1[3], b1[3] = 0.0, 0.0  # a channel that stays at 0: range 1
    images = [random_rgb(30, 42, seed=1), random_rgb(27, 33, seed=2)]
    ranges = calibrate_a1_ranges(w1, b1, 3, images)
    peak = torch.zeros(8)
    for hr in images:
        y = rgb_to_y(make_lr(hr, 3)[None]).double()
        a = torch.tanh(torch.nn.functional.conv2d(y, w1.double(), b1.double(), padding=2))
        peak = torch.maximum(peak, a.abs().amax(dim=(0, 2, 3)).float())
    assert ranges.dtype == torch.float32 and ranges[3] == 1.0
    keep = torch.arange(8) != 3
    # int8's layer 1 has 16-bit codes of the input and 2621-level weights: within their rounding
    torch.testing.assert_close(ranges[keep], peak[keep], rtol=1e-3, atol=0)
    assert bool((ranges[keep] < 1).all())


def test_no_images_is_an_error():
    with pytest.raises(ValueError, match="no images to calibrate on"):
        calibrate_a1_ranges(torch.randn(4, 1, 5, 5), torch.zeros(4), 2, [])


def test_command_writes_the_weights_with_their_ranges(train_dir, x3_init, tmp_path, capsys):
    out = tmp_path / "ranged.safetensors"
    assert main([str(x3_init), "--scale", "3", "--data", str(train_dir), "--val-count", "1", "--out", str(out)]) == 0
    state, start = load_weights(out), load_weights(x3_init)
    train_images, _ = split_validation(load_folder(train_dir), 1)
    w1, b1 = start["feature_maps.0.weight"], start["feature_maps.0.bias"]
    assert torch.equal(state[A1_RANGES_KEY], calibrate_a1_ranges(w1, b1, 3, train_images))
    assert all(torch.equal(state[k], v) for k, v in start.items())
    assert "a1_ranges" in capsys.readouterr().out
    # errors name the problem and write nothing
    assert main([str(tmp_path / "missing.safetensors"), "--scale", "3", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert main([str(x3_init), "--scale", "2", "--data", str(train_dir), "--out", str(tmp_path / "y.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "scale" in err
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "y.safetensors").exists()
