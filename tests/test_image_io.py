"""Reading and writing images: 16-bit scaled (not clipped), float images refused, huge images allowed up to a
limit; EXIF orientation applied, alpha and ICC profiles kept, JPEG written at high quality."""

from __future__ import annotations

import os
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from espcn_fast import FastESPCN, image_io
from espcn_fast.image_io import ImageReadError, read_image, write_image
from espcn_fast.resize import imresize
from espcn_fast.upscale import upscale_image

from .conftest import random_rgb


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


def _png(path, header: bytes, raw: bytes) -> None:
    """A PNG file from its IHDR fields and its filtered rows."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def _png16(path, values: np.ndarray) -> None:
    """Write 16-bit RGB (H, W, 3) or RGBA (H, W, 4) ``values`` as a PNG, which Pillow cannot do.

    Rows cycle through filters None, Sub and Up, so decoding must undo them
    with the 6- or 8-byte pixel of 16-bit colour.
    """
    h, w, c = values.shape
    rows = values.astype(">u2").reshape(h, w * c).view(np.uint8).reshape(h, -1)
    bpp = 2 * c
    raw = b""
    for y, row in enumerate(rows):
        kind = y % 3
        if kind == 1:
            row = row - np.concatenate([np.zeros(bpp, np.uint8), row[:-bpp]])
        elif kind == 2:
            row = row - rows[y - 1]
        raw += bytes([kind]) + row.astype(np.uint8).tobytes()
    _png(path, struct.pack(">IIBBBBB", w, h, 16, 2 if c == 3 else 6, 0, 0, 0), raw)


@pytest.mark.parametrize("channels", [3, 4])
def test_16_bit_colour_is_rounded_as_grey_is(tmp_path, channels):
    values = np.random.default_rng(2).integers(0, 65536, (7, 11, channels)).astype(np.uint16)
    values[0, 0, :3] = (511, 32896, 65535)  # 511 -> 1.988: 2, not the high byte's 1
    path = tmp_path / "c16.png"
    _png16(path, values)
    expected = torch.from_numpy(np.round(values / 257.0).astype(np.uint8)).permute(2, 0, 1)
    assert torch.equal(read_image(path, mode="keep"), expected)
    assert torch.equal(read_image(path), expected[:3])
    assert read_image(path)[:, 0, 0].tolist() == [2, 128, 255]


def test_exif_orientation_is_applied(tmp_path):
    """Stored 8 wide x 4 high with Orientation 6 (turn 90 degrees clockwise): viewers show 4 x 8."""
    stored = np.zeros((4, 8, 3), np.uint8)
    stored[:, :4] = 255  # the left half, which ends up on top
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=100)
    image = read_image(path, mode="keep")
    assert image.shape == (3, 8, 4)
    assert image[:, :3].float().mean() > 240 and image[:, 5:].float().mean() < 15


def _with_alpha(h: int, w: int, grey: bool = False) -> np.ndarray:
    colour = random_rgb(h, w, seed=3).permute(1, 2, 0).numpy()
    alpha = np.tile(np.linspace(0, 255, w).round().astype(np.uint8), (h, 1))
    alpha[: h // 2] = 0  # the top half fully transparent
    return np.dstack([colour[:, :, :1] if grey else colour, alpha])


def test_alpha_is_kept_in_mode_keep(tmp_path):
    rgba, la = _with_alpha(6, 9), _with_alpha(6, 9, grey=True)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(la).save(tmp_path / "la.png")
    palette = Image.fromarray(rgba[:, :, :3]).quantize(4)
    palette.save(tmp_path / "p.png", transparency=0)
    assert torch.equal(read_image(tmp_path / "rgba.png", mode="keep"), torch.from_numpy(rgba).permute(2, 0, 1))
    assert torch.equal(read_image(tmp_path / "la.png", mode="keep"), torch.from_numpy(la).permute(2, 0, 1))
    p = read_image(tmp_path / "p.png", mode="keep")
    assert p.shape == (4, 6, 9) and torch.equal(p[3] == 0, torch.from_numpy(np.asarray(palette) == 0))
    # The evaluation's RGB mode has no alpha.
    assert torch.equal(read_image(tmp_path / "rgba.png"), torch.from_numpy(rgba[:, :, :3]).permute(2, 0, 1))


@pytest.mark.parametrize("grey", [False, True])
def test_upscale_image_resizes_alpha_bicubic_beside_the_colour(grey):
    fast = FastESPCN.from_pretrained(2)
    image = torch.from_numpy(_with_alpha(21, 26, grey)).permute(2, 0, 1).contiguous()
    out = upscale_image(image, fast, 2)
    assert out.shape == (image.shape[0], 42, 52)
    assert torch.equal(out[:-1], upscale_image(image[:-1].contiguous(), fast, 2))
    assert torch.equal(out[-1:], imresize(image[-1:], 2))
    assert torch.equal(upscale_image(image, fast, 2, tile=8), out)  # the halo covers the bicubic's 2 pixels


def test_write_image_keeps_alpha_where_the_format_can(tmp_path):
    rgba = torch.from_numpy(_with_alpha(6, 9)).permute(2, 0, 1).contiguous()
    for suffix in (".png", ".tif", ".webp"):
        write_image(rgba, tmp_path / f"a{suffix}")
        with Image.open(tmp_path / f"a{suffix}") as saved:
            assert saved.mode == "RGBA"
            alpha = torch.from_numpy(np.asarray(saved)[:, :, 3].copy())
        assert (alpha.int() - rgba[3].int()).abs().max() <= (0 if suffix != ".webp" else 2)
    write_image(rgba, tmp_path / "a.jpg")  # JPEG has no alpha: the colour alone
    with Image.open(tmp_path / "a.jpg") as saved:
        assert saved.mode == "RGB"
    write_image(rgba[[0, 3]].contiguous(), tmp_path / "la.png")
    assert torch.equal(read_image(tmp_path / "la.png", mode="keep"), rgba[[0, 3]])


def test_cli_keeps_alpha_and_orientation(tmp_path):
    from espcn_fast.cli import main

    rgba = _with_alpha(10, 14)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgba).save(tmp_path / "in.png", exif=exif.tobytes())
    assert (
        main(
            [
                "upscale",
                str(tmp_path / "in.png"),
                "-o",
                str(tmp_path / "out.png"),
                "--scale",
                "2",
                "--device",
                "cpu",
                "-q",
            ]
        )
        == 0
    )
    out = read_image(tmp_path / "out.png", mode="keep")
    upright = torch.from_numpy(np.rot90(rgba, -1).copy()).permute(2, 0, 1)
    assert out.shape == (4, 28, 20)
    assert torch.equal(out[3], imresize(upright[3:], 2)[0])


def _srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif", ".webp"])
def test_icc_profile_is_read_and_written(tmp_path, suffix):
    icc = _srgb_profile()
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "in.jpg", icc_profile=icc)
    image, profile = image_io.read_image_and_profile(tmp_path / "in.jpg", mode="keep")
    assert profile == icc and torch.equal(image, read_image(tmp_path / "in.jpg", mode="keep"))
    write_image(image, tmp_path / f"out{suffix}", icc_profile=profile)
    with Image.open(tmp_path / f"out{suffix}") as saved:
        assert saved.info.get("icc_profile") == icc


def test_cli_carries_the_icc_profile(tmp_path):
    from espcn_fast.cli import main

    icc = _srgb_profile()
    Image.fromarray(np.full((6, 7, 3), 90, np.uint8)).save(tmp_path / "in.jpg", icc_profile=icc)
    assert (
        main(
            [
                "upscale",
                str(tmp_path / "in.jpg"),
                "-o",
                str(tmp_path / "out.png"),
                "--scale",
                "2",
                "--device",
                "cpu",
                "-q",
            ]
        )
        == 0
    )
    with Image.open(tmp_path / "out.png") as saved:
        assert saved.info.get("icc_profile") == icc


def test_icc_profile_of_another_colour_space_is_dropped(tmp_path):
    # An RGB profile on an image read as grey (or a CMYK one on CMYK made RGB) would describe the wrong data.
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "grey.png", icc_profile=_srgb_profile())
    assert image_io.read_image_and_profile(tmp_path / "grey.png", mode="keep")[1] is None
    assert image_io.read_image_and_profile(tmp_path / "grey.png")[1] is not None  # read as RGB: the profile fits


def test_jpeg_is_written_at_quality_95_without_chroma_subsampling(tmp_path):
    from PIL import JpegImagePlugin

    image = random_rgb(16, 16)
    write_image(image, tmp_path / "out.jpg")
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp_path / "ref.jpg", quality=95, subsampling=0)
    with Image.open(tmp_path / "out.jpg") as out, Image.open(tmp_path / "ref.jpg") as ref:
        assert out.quantization == ref.quantization
        assert JpegImagePlugin.get_sampling(out) == 0  # 4:4:4


def test_images_above_the_pixel_limit_are_refused_naming_file_and_size(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(path)
    monkeypatch.setattr(image_io, "MAX_PIXELS", 5000)  # 4096 pixels: read, without Pillow's warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(path).shape == (3, 64, 64)
    monkeypatch.setattr(image_io, "MAX_PIXELS", 2000)
    with pytest.raises(ImageReadError, match=r"a\.png: it claims 64x64 = 4096 pixels, over the limit of 2000"):
        read_image(path)
    monkeypatch.setattr(image_io, "MAX_PIXELS", 1000)  # Pillow's error zone
    with pytest.raises(ImageReadError, match=r"a\.png: .*4096 pixels.* limit of 1000"):
        read_image(path)


def test_a_small_file_claiming_60000_x_60000_is_refused_before_decoding(tmp_path):
    """A 1.8 KB PNG whose header claims 3.6 gigapixels: refused at once, never allocated."""
    path = tmp_path / "bomb.png"
    _png(path, struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0), bytes(60001 * 30))  # 30 rows of grey 0
    assert path.stat().st_size < 2000
    with pytest.raises(ImageReadError, match=r"bomb\.png: .*3600000000 pixels"):
        read_image(path)


def test_writes_are_whole_or_not_at_all(tmp_path):
    from espcn_fast.atomic_write import replacing

    target = tmp_path / "out.png"
    write_image(random_rgb(6, 7), target)
    before = target.read_bytes()
    with pytest.raises(RuntimeError, match="disk full"):
        with replacing(target) as tmp:
            tmp.write_bytes(b"half an ima")
            raise RuntimeError("disk full")
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    with replacing(target) as a, replacing(target) as b:  # two writers of one path: their own names
        assert a != b
        a.write_bytes(b"1")
        b.write_bytes(b"2")
    assert target.read_bytes() == b"1" and sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    # The writer makes the file: the umask's permissions, not mkstemp's 0600.
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_long_file_names_are_written(tmp_path):
    # The temporary name beside the target must fit in the file system's 255 bytes too.
    target = tmp_path / ("é" * 60 + "a" * 120 + ".png")  # 250 bytes
    write_image(random_rgb(4, 5), target)
    assert target.exists() and len(list(tmp_path.iterdir())) == 1


def test_pixel_limit_boundary_and_the_icc_of_images_with_alpha(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((6, 7, 4), np.uint8), "RGBA").save(path, icc_profile=_srgb_profile())
    monkeypatch.setattr(image_io, "MAX_PIXELS", 42)  # exactly the image's pixels: read
    image, icc = image_io.read_image_and_profile(path, mode="keep")
    assert image.shape == (4, 6, 7) and icc == _srgb_profile()  # an RGB profile fits RGB + alpha
    monkeypatch.setattr(image_io, "MAX_PIXELS", 41)
    with pytest.raises(ImageReadError, match="over the limit of 41"):
        read_image(path)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_every_exif_orientation_matches_pillows_transpose(tmp_path, orientation, suffix):
    from PIL import ImageOps

    stored = random_rgb(5, 8, seed=orientation).permute(1, 2, 0).numpy()
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}{suffix}"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), **({"quality": 100} if suffix == ".jpg" else {}))
    with Image.open(path) as img:
        expected = torch.from_numpy(np.array(ImageOps.exif_transpose(img))).permute(2, 0, 1)
    assert torch.equal(read_image(path), expected)


def _rows_png(path, width: int, height: int, rows_present: int, colour_type: int = 2, interlace: int = 0) -> None:
    """A PNG with valid chunks and CRCs whose one complete zlib stream holds only ``rows_present`` rows."""
    channels = {0: 1, 2: 3}[colour_type]
    rows = np.random.default_rng(5).integers(1, 256, (rows_present, 1 + width * channels)).astype(np.uint8)
    rows[:, 0] = 0  # filter: none
    _png(path, struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, interlace), rows.tobytes())


@pytest.mark.parametrize("colour_type", [0, 2])
def test_png_whose_stream_stops_short_is_refused(tmp_path, colour_type):
    """Pillow fills the missing rows with zeros and reports nothing: a black band that would be upscaled."""
    path = tmp_path / "half.png"
    _rows_png(path, 40, 30, 15, colour_type)
    with pytest.raises(
        ImageReadError,
        match=r"half\.png: the file is truncated \(its image data stops short: "
        r"about 15 of its 30 rows are present\)",
    ):
        read_image(path)
    whole = tmp_path / "whole.png"
    _rows_png(whole, 40, 30, 30, colour_type)
    assert read_image(whole, mode="keep").shape == ({0: 1, 2: 3}[colour_type], 30, 40)


def test_interlaced_png_short_stream_is_refused_and_complete_ones_read(tmp_path):
    from espcn_fast.png_stream import expected_bytes

    Image.fromarray(random_rgb(23, 37).permute(1, 2, 0).numpy()).save(tmp_path / "i.png", interlace=1)
    assert read_image(tmp_path / "i.png").shape == (3, 23, 37)
    full = expected_bytes(37, 23, 8, 2, True)
    path = tmp_path / "cut.png"
    _png(path, struct.pack(">IIBBBBB", 37, 23, 8, 2, 0, 0, 1), bytes(full // 2))
    with pytest.raises(ImageReadError, match=rf"cut\.png: the file is truncated .*{full // 2} of {full} bytes"):
        read_image(path)


def test_cli_skips_a_png_cut_short_and_goes_on(tmp_path, capsys):
    from espcn_fast.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    _rows_png(folder / "a_half.png", 20, 16, 8)
    write_image(random_rgb(12, 10), folder / "b_good.png")
    assert main(["upscale", str(folder), "-o", str(tmp_path / "out"), "--scale", "2", "-q"]) == 1
    assert "a_half.png: the file is truncated" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b_good.png"]


def _read_peak(path, small) -> tuple[int, int]:
    """The values read from ``path`` and the bytes the read grew a fresh process by at its peak."""
    from .peak_memory import peak_growth

    setup = (
        "import sys\nfrom espcn_fast.image_io import read_image\n"
        "read_image(sys.argv[4], mode='keep')  # libraries and plugins loaded"
    )
    grown, printed = peak_growth(
        setup, "image = read_image(sys.argv[3], mode='keep')\nprint(image.numel())", str(path), str(small)
    )
    return int(printed), grown


def test_reading_a_large_8_bit_png_holds_little_more_than_pillows_copy_and_the_result(tmp_path):
    """A 6000 x 5000 RGB PNG of mostly one colour (a few hundred KB) decodes to 90 MB: the read may grow the
    process by Pillow's copy (4 bytes a pixel) and the result (3), not by several copies more."""
    pixels = np.zeros((5000, 6000, 3), np.uint8)
    pixels[::97] = 200
    Image.fromarray(pixels).save(tmp_path / "big.png", compress_level=1)
    write_image(random_rgb(8, 8), tmp_path / "small.png")
    values, grown = _read_peak(tmp_path / "big.png", tmp_path / "small.png")
    assert values == 5000 * 6000 * 3
    assert grown <= 7 * 5000 * 6000 + 40 * 2**20, f"the read grew the process by {grown / 2**20:.0f} MiB"


def test_reading_a_large_16_bit_png_holds_at_most_twice_its_decoded_size(tmp_path):
    h, w = 4000, 4500
    rows = np.zeros((h, 1 + w * 6), np.uint8)
    rows[::89, 1:] = 171
    path = tmp_path / "big16.png"
    _png(path, struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0), rows.tobytes())
    write_image(random_rgb(8, 8), tmp_path / "small.png")
    values, grown = _read_peak(path, tmp_path / "small.png")
    decoded = h * w * 3 * 2
    assert values == h * w * 3
    assert grown <= 2 * decoded, f"the read grew the process by {grown / decoded:.2f}x the decoded size"


def test_a_16_bit_grey_and_alpha_png_leaves_no_file_open(tmp_path):
    """Its second decode, for the low bytes, fails (Pillow has no rawmode for it): the file it opened is closed."""
    import gc

    values = (np.arange(5 * 7 * 2).reshape(5, 7, 2) * 900).astype(">u2")
    rows = b"".join(b"\x00" + row.tobytes() for row in values)
    _png(tmp_path / "la.png", struct.pack(">IIBBBBB", 7, 5, 16, 4, 0, 0, 0), rows)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert read_image(tmp_path / "la.png", mode="keep").shape[1:] == (5, 7)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]
