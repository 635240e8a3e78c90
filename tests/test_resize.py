import pytest
import torch

from espcn_fast.image_io import list_images, read_image
from espcn_fast.resize import imresize, modcrop


def _pairs(data_dir, scale):
    for set_name in ("Set5", "Set14"):
        for hr_path in list_images(data_dir / set_name):
            lr_path = data_dir / "LR_bicubic" / set_name / f"x{scale}" / hr_path.name
            yield hr_path.name, read_image(hr_path, mode="keep"), read_image(lr_path, mode="keep")


@pytest.mark.parametrize("scale,tolerance", [(3, 0), (2, 1), (4, 1)])
def test_reproduces_standard_lr_images(data_dir, scale, tolerance):
    """MATLAB imresize made the standard LR inputs: x3 interiors exactly, x2/x4 within 1 level."""
    count = 0
    for name, hr, lr in _pairs(data_dir, scale):
        out = imresize(modcrop(hr, scale), 1 / scale)
        assert out.dtype == torch.uint8 and out.shape == lr.shape, name
        diff = (out.int() - lr.int()).abs()[:, 2:-2, 2:-2]
        assert diff.max().item() <= tolerance, f"{name}: max difference {diff.max().item()}"
        count += 1
    assert count == 19


def test_batched_equals_one_by_one():
    g = torch.Generator().manual_seed(0)
    batch = torch.randint(0, 256, (2, 3, 30, 27), generator=g, dtype=torch.uint8)
    together = imresize(batch, 1 / 3)
    for i in range(2):
        assert torch.equal(together[i], imresize(batch[i], 1 / 3))


def test_float_input_is_not_rounded_and_keeps_dtype():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 12, 12, generator=g, dtype=torch.float64)
    out = imresize(x, 0.5)
    assert out.dtype == torch.float64 and out.shape == (1, 6, 6)
    assert not torch.equal(out, out.round())
    f32 = imresize(x.float(), 0.5)
    assert f32.dtype == torch.float32
    assert torch.allclose(f32.double(), out, atol=1e-6)


def test_uint8_equals_float64_with_rounding_after_each_pass():
    """The uint8 path is the float path plus MATLAB's round to uint8 after each pass."""
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, 256, (3, 18, 24), generator=g, dtype=torch.uint8)
    # Height (scale 1/3) goes first, then width (1/2); a scale-1 pass is the identity.
    first = torch.floor(imresize(x.double(), size=(6, 24)).clamp(0, 255) + 0.5)
    second = torch.floor(imresize(first, size=(6, 12)).clamp(0, 255) + 0.5)
    assert torch.equal(imresize(x, size=(6, 12)), second.to(torch.uint8))


@pytest.mark.parametrize("scale", [2, 3, 4, 0.5, 1 / 3])
def test_constant_image_stays_constant(scale):
    x = torch.full((1, 9, 13), 0.37, dtype=torch.float64)
    out = imresize(x, scale)
    assert torch.allclose(out, torch.full_like(out, 0.37), atol=1e-12)


def test_upscale_shape_and_interpolates_through_samples():
    x = torch.arange(16, dtype=torch.float64).reshape(1, 4, 4)
    out = imresize(x, 3)
    assert out.shape == (1, 12, 12)
    # With odd integer scales, every third output pixel sits on an input pixel.
    assert torch.allclose(out[0, 1::3, 1::3], x[0], atol=1e-12)


def test_size_argument_and_orientation():
    x = torch.rand(2, 10, 20, dtype=torch.float64)
    assert imresize(x, size=(5, 7)).shape == (2, 5, 7)
    # Transposing commutes with the resize (up to rounding order).
    t = imresize(x.transpose(-1, -2), size=(7, 5)).transpose(-1, -2)
    assert torch.allclose(t, imresize(x, size=(5, 7)), atol=1e-12)


def test_modcrop():
    x = torch.zeros(3, 11, 13)
    assert modcrop(x, 3).shape == (3, 9, 12)
    assert modcrop(x, 1).shape == (3, 11, 13)


@pytest.mark.parametrize(
    "args,kwargs,exc,match",
    [
        ((torch.zeros(3, 4, 4, dtype=torch.int32), 0.5), {}, TypeError, "uint8 or floating"),
        ((torch.zeros(3, 0, 4), 0.5), {}, ValueError, "empty image"),
        ((torch.zeros(4), 0.5), {}, ValueError, r"\(\.\.\., H, W\)"),
        ((torch.zeros(4, 4),), {}, ValueError, "exactly one of scale or size"),
        ((torch.zeros(4, 4), -1.0), {}, ValueError, "positive"),
        ((torch.zeros(4, 4),), {"size": (0, 3)}, ValueError, "positive"),
        (([[1.0]], 0.5), {}, TypeError, "torch.Tensor"),
    ],
)
def test_errors(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        imresize(*args, **kwargs)


def test_the_kernel_and_the_borders_without_the_data():
    # MATLAB's cubic (a = -0.5) at its knots, and symmetric padding at both ends: checked even
    # where the LR reference images are absent.
    from espcn_fast.resize import _contributions, _cubic

    torch.testing.assert_close(
        _cubic(torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0], dtype=torch.float64)),
        torch.tensor([1.0, 0.5625, 0.0, -0.0625, 0.0], dtype=torch.float64),
    )
    idx, _ = _contributions(5, 10, 2.0, True, torch.device("cpu"))
    # The first and last output pixels' taps run past the edges: mirrored (symmetric), not clamped.
    assert idx[0].tolist() == [1, 0, 0, 1] and idx[-1].tolist() == [3, 4, 4, 3]
    idx, _ = _contributions(6, 3, 0.5, True, torch.device("cpu"))  # shrinking: wider, mirrored taps
    assert idx[0].tolist() == [2, 1, 0, 0, 1, 2, 3, 4]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_a_crop_upscales_to_exactly_the_whole_images_pixels(scale):
    """An integer upscale's weights depend only on the output pixel's phase, and the taps are summed in one
    order: a crop with 2 pixels of margin gives bit-identical pixels at any position and image size."""
    g = torch.Generator().manual_seed(scale)
    image = torch.rand(2, 45, 70, generator=g, dtype=torch.float32)
    whole = imresize(image, size=(45 * scale, 70 * scale))
    for top, left, h, w in [(2, 2, 8, 9), (10, 31, 30, 37), (17, 4, 3, 60), (0, 0, 45, 70)]:
        y0, x0 = max(0, top - 2), max(0, left - 2)
        y1, x1 = min(45, top + h + 2), min(70, left + w + 2)
        part = imresize(image[:, y0:y1, x0:x1], size=((y1 - y0) * scale, (x1 - x0) * scale))
        inner = part[:, (top - y0) * scale : (top - y0 + h) * scale, (left - x0) * scale : (left - x0 + w) * scale]
        assert torch.equal(inner, whole[:, top * scale : (top + h) * scale, left * scale : (left + w) * scale])
