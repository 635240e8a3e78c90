"""Make docs/images/before_after.png: crops of bicubic | ESPCN | original at x3 from Set5 and Set14.

    python docs/before_after.py [--data DIR] [-o docs/images/before_after.png]

Each LR image is the evaluation protocol's (MATLAB bicubic downscale of the
modcropped original); bicubic and ESPCN (the shipped x3 weights) upscale it
back. Each crop is shown at twice its size (nearest neighbour, so no
smoothing is added) with its PSNR on Y against the original's crop.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from espcn_fast import FastESPCN
from espcn_fast.color import rgb_to_y
from espcn_fast.data_dir import find_data_dir
from espcn_fast.evaluate import make_lr
from espcn_fast.image_io import read_image, write_image
from espcn_fast.metrics import psnr
from espcn_fast.resize import imresize, modcrop
from espcn_fast.upscale import upscale_image

SCALE = 3
# (set, image, top, left) of a 120 x 120 crop with fine detail
CROPS = (("Set5", "butterfly", 60, 100), ("Set14", "zebra", 150, 240), ("Set14", "comic", 40, 60))
SIZE, ZOOM, LABEL = 120, 2, 22


def _panel(image: torch.Tensor, top: int, left: int) -> Image.Image:
    crop = image[:, top : top + SIZE, left : left + SIZE].permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(crop).resize((SIZE * ZOOM, SIZE * ZOOM), Image.NEAREST)


def make_figure(data: Path) -> Image.Image:
    """The figure: one row per crop, columns bicubic | ESPCN x3 | original, PSNR (Y) under each upscale."""
    model = FastESPCN.from_pretrained(SCALE)
    side = SIZE * ZOOM
    figure = Image.new("RGB", (3 * side + 4 * 8, len(CROPS) * (side + LABEL) + 8), "white")
    draw = ImageDraw.Draw(figure)
    for row, (folder, name, top, left) in enumerate(CROPS):
        hr = modcrop(read_image(data / folder / f"{name}.png"), SCALE)
        lr = make_lr(hr, SCALE)
        results = (("bicubic", imresize(lr, SCALE)), ("ESPCN x3", upscale_image(lr, model, SCALE)), ("original", hr))
        y = 8 + row * (side + LABEL)
        for col, (title, image) in enumerate(results):
            x = 8 + col * (side + 8)
            figure.paste(_panel(image, top, left), (x, y))
            crop = (slice(None), slice(top, top + SIZE), slice(left, left + SIZE))
            score = (
                "" if title == "original" else f"  {psnr(rgb_to_y(image[crop]) * 255, rgb_to_y(hr[crop]) * 255):.2f} dB"
            )
            draw.text((x + 2, y + side + 4), f"{name}: {title}{score}", fill="black")
    return figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="data folder (default: $ESPCN_FAST_DATA or ../shared/data)")
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).parent / "images" / "before_after.png")
    args = parser.parse_args()
    figure = make_figure(find_data_dir(args.data))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_image(torch.from_numpy(np.array(figure)).permute(2, 0, 1), args.output)
    print(f"wrote {args.output} ({figure.width}x{figure.height})")


if __name__ == "__main__":
    main()
