"""Reading images: 16-bit grey scaled (not clipped), float images refused, huge images allowed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from espcn_fast.image_io import ImageReadError, read_image


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_grey_is_scaled_to_8_bits(tmp_path, suffix):
    values = np.random.default_rng(0).integers(0, 65536, (9, 13)).astype(np.uint16)
    values[0, :3] = (0, 65535, 32896)  # 32896 / 257 = 128 exactly
    path = tmp_path / f"g16{suffix}"
    Image.fromarray(values).save(path)
    expected = torch.from_numpy(np.round(values / 257.0).astype(np.uint8))
    grey = read_image(path, mode="keep")
    assert grey.shape == (1, 9, 13) and torch.equal(grey[0], expected)
    assert grey[0, 0, :3].tolist() == [0, 255, 128]
    rgb = read_image(path)
    assert rgb.shape == (3, 9, 13) and all(torch.equal(c, expected) for c in rgb)


def test_32_bit_integer_image_out_of_16_bit_range_is_refused(tmp_path):
    path = tmp_path / "big.tif"
    Image.fromarray(np.full((4, 4), 70000, np.int32)).save(path)
    with pytest.raises(ImageReadError, match="values outside 0..65535"):
        read_image(path)


def test_float_image_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "f.tif"
    Image.fromarray(np.random.default_rng(1).random((5, 6), dtype=np.float32)).save(path)
    with pytest.raises(ImageReadError, match="floating-point images are not supported"):
        read_image(path)


def test_images_above_pillows_bomb_limit_are_read(tmp_path, monkeypatch):
    """Huge images are what tiling is for: Pillow's decompression-bomb guard is lifted while reading only."""
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64 x 64 would be more than twice over: an error
    assert read_image(path).shape == (3, 64, 64)
    assert Image.MAX_IMAGE_PIXELS == 100
