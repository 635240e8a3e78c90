"""Tiles with a 4-pixel LR halo give exactly the untiled result (network and whole image path)."""

from __future__ import annotations

import pytest
import torch

from espcn_fast import ESPCN, FastESPCN, ops
from espcn_fast.tiling import run_tiled, tiles
from espcn_fast.upscale import upscale_image

from .conftest import random_rgb
from .kernel_checks import random_model


def test_tiles_cover_every_pixel_once():
    for h, w, tile in [(1, 1, 16), (37, 53, 16), (64, 64, 32), (5, 200, 7)]:
        owned = torch.zeros(h, w, dtype=torch.int32)
        for rows, _cols, own_rows, own_cols in tiles(h, w, tile):
            owned[own_rows, own_cols] += 1
            assert rows.start <= own_rows.start and rows.stop >= own_rows.stop
            assert own_rows.start - rows.start in (0, 4) or rows.start == 0
            assert own_rows.start % 2 == 0 and own_cols.start % 2 == 0
        assert (owned == 1).all()
    with pytest.raises(ValueError, match="tile must be >= 2"):
        list(tiles(4, 4, 1))


@pytest.mark.parametrize("backend", ["cpu", "torch"])
@pytest.mark.parametrize("tile", [8, 16, 30, 33])
def test_network_tiles_are_exact(backend, tile):
    if backend == "cpu" and not ops.HAVE_EXTENSION:
        pytest.skip(str(ops.EXTENSION_ERROR))
    ref = random_model(3, seed=tile)
    x = torch.rand(2, 1, 61, 47, generator=torch.Generator().manual_seed(tile))
    whole = FastESPCN.from_reference(ref, backend=backend)
    tiled = FastESPCN.from_reference(ref, backend=backend, tile=tile)
    with torch.no_grad():
        a, b = whole(x), tiled(x)
    # Exact everywhere, tile edges and corners included.
    assert torch.equal(a, b), f"max difference {float((a - b).abs().max())}"
    with torch.no_grad():
        assert torch.equal(run_tiled(whole, x, 3, tile), a)


@pytest.mark.parametrize("tile", [16, 24, 50])
def test_image_path_tiles_are_exact(tile):
    fast = FastESPCN.from_pretrained(3)
    for image in (random_rgb(61, 83, seed=tile), random_rgb(40, 29, seed=1)[:1].contiguous()):
        assert torch.equal(upscale_image(image, fast, 3, tile=tile), upscale_image(image, fast, 3))


def test_out_of_memory_falls_back_to_tiles(monkeypatch):
    """A GPU that cannot hold the whole image: the path retries in tiles (halving), same pixels."""
    import espcn_fast.upscale as up

    fast = FastESPCN.from_pretrained(2)
    image = random_rgb(70, 90, seed=5)
    expected = upscale_image(image, fast, 2)
    sizes = []

    def small_memory(y: torch.Tensor) -> torch.Tensor:
        sizes.append(y.shape[-2] * y.shape[-1])
        if y.shape[-2] * y.shape[-1] > 40 * 40:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return fast(y)

    monkeypatch.setattr(up, "OOM_FIRST_TILE", 64)
    assert torch.equal(upscale_image(image, small_memory, 2), expected)
    assert sizes[0] == 70 * 90 and sizes[1] > 40 * 40 and sizes[-1] <= 40 * 40  # whole, tile 64, then 32


def test_fast_module_rejects_a_bad_tile():
    with pytest.raises(ValueError, match="tile must be >= 2"):
        FastESPCN(3, tile=1)


def test_a_model_of_another_scale_is_refused_not_stitched():
    x = torch.rand(1, 1, 20, 20)
    with pytest.raises(ValueError, match=r"a 12x12 tile came back 36x36, not x2 \(24x24\)"):
        run_tiled(ESPCN(3).eval(), x, 2, 8)


def test_upscale_image_refuses_a_model_of_another_scale():
    with pytest.raises(ValueError, match="upscale_image: scale 2 but the model upscales x3"):
        upscale_image(random_rgb(8, 8), ESPCN(3).eval(), 2)


def test_image_path_tiles_are_exact_for_many_sizes_scales_and_tiles():
    """Whole and tiled runs give the same bytes: the bicubic chroma and alpha included, tiles down to 2 pixels."""
    for scale in (2, 3, 4):
        fast = FastESPCN.from_reference(random_model(scale, seed=scale))
        for h, w, seed in [(37, 41, 1), (24, 60, 2), (53, 19, 3)]:
            rgb = random_rgb(h, w, seed=seed + 10 * scale)
            rgba = torch.cat([rgb, random_rgb(h, w, seed=seed + 99)[:1]])
            for image in (rgb, rgba):
                whole = upscale_image(image, fast, scale)
                for tile in (2, 3, 4, 5, 6, 7, 11, 16):
                    tiled = upscale_image(image, fast, scale, tile=tile)
                    differ = int((whole != tiled).sum())
                    assert differ == 0, f"x{scale} {h}x{w} C={image.shape[0]} tile {tile}: {differ} values differ"


def test_natural_image_tiles_are_exact(data_dir):
    """Natural images flip a rounding where random ones rarely do: a float32 chroma resize whose sums depend on
    the image's size was one level off in one pixel of this crop (x2, tiles of 64, 50 and 32)."""
    from espcn_fast.image_io import read_image

    for scale in (2, 3):
        fast = FastESPCN.from_pretrained(scale)
        for name in ("barbara", "baboon", "comic"):
            image = read_image(data_dir / "Set14" / f"{name}.png")[:, :240, :240].contiguous()
            whole = upscale_image(image, fast, scale)
            for tile in (64, 50, 32):
                differ = int((upscale_image(image, fast, scale, tile=tile) != whole).sum())
                assert differ == 0, f"{name} x{scale} tile {tile}: {differ} values differ"
