import pytest
import torch

from espcn_fast.color import rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb


def test_matlab_reference_values():
    # MATLAB: rgb2ycbcr(uint8([255 0 0])) = [81 90 240]; white -> [235 128 128]; black -> [16 128 128]
    rgb = torch.tensor([[255, 255, 0], [0, 255, 0], [0, 255, 0]], dtype=torch.uint8).reshape(3, 1, 3)
    out = rgb_to_ycbcr(rgb) * 255
    assert torch.allclose(out[:, 0, 0], torch.tensor([81.481, 90.203, 240.0]), atol=1e-3)
    assert torch.allclose(out[:, 0, 1], torch.tensor([235.0, 128.0, 128.0]), atol=1e-3)
    assert torch.allclose(out[:, 0, 2], torch.tensor([16.0, 128.0, 128.0]), atol=1e-3)


def test_round_trip_float64_batched():
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(2, 4, 3, 5, 7, generator=g, dtype=torch.float64)
    back = ycbcr_to_rgb(rgb_to_ycbcr(rgb))
    assert back.shape == rgb.shape
    assert torch.allclose(back, rgb, atol=1e-12)


def test_y_only_matches_full_conversion():
    g = torch.Generator().manual_seed(1)
    rgb = torch.randint(0, 256, (3, 6, 9), generator=g, dtype=torch.uint8)
    assert torch.equal(rgb_to_y(rgb), rgb_to_ycbcr(rgb)[:1])
    assert rgb_to_y(rgb).shape == (1, 6, 9)


@pytest.mark.parametrize("bad", [torch.zeros(4, 2, 2), torch.zeros(2, 2)])
def test_wrong_channel_count(bad):
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\)"):
        rgb_to_ycbcr(bad)


def test_integer_dtype_other_than_uint8():
    with pytest.raises(TypeError, match="float or uint8"):
        rgb_to_ycbcr(torch.zeros(3, 2, 2, dtype=torch.int32))
