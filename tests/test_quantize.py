"""8-bit rounding, the one convention everywhere: clipped, half away from zero (MATLAB's im2uint8)."""

from __future__ import annotations

import torch

from espcn_fast.quantize import quantize, round_255, to_uint8_


def test_quantize_rounds_half_up_and_clips():
    y = torch.tensor([-0.1, 0.5 / 255, 1.5 / 255, 2.5 / 255, 1.2])
    assert quantize(y).tolist() == [0.0, 1.0, 2.0, 3.0, 255.0]  # half to even would give 0, 2, 2
    assert round_255(torch.tensor([-3.0, 0.5, 1.5, 2.5, 254.5, 300.0])).tolist() == [0, 1, 2, 3, 255, 255]


def test_to_uint8_in_place_matches_quantize():
    y = torch.rand(3, 50, 70, generator=torch.Generator().manual_seed(0)) * 1.4 - 0.2
    y[0, 0, :3] = torch.tensor([0.5 / 255, 1.5 / 255, 254.5 / 255])
    expected = quantize(y).to(torch.uint8)
    work = y.clone()
    out = to_uint8_(work)
    assert out.dtype == torch.uint8 and torch.equal(out, expected)
    assert out[0, 0, :3].tolist() == [1, 2, 255]
