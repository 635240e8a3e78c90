"""Calibration of int8's layer-1 ranges: how far each channel of layer 1's tanh reaches on the training images.

The CPU int8 arithmetic stores layer 1's output a of channel c as
``round(a * 127 / r_c)`` (:mod:`espcn_fast.reduced_precision`); most channels
of a trained ESPCN stay well inside (-1, 1), so their range ``r_c`` below 1 gives
them a finer grid. ``r_c`` is the largest ``|a|`` over whole LR training images,
computed in the int8 arithmetic's layer 1; larger values met later are clamped.

    python -m training.a1_ranges --scale 2 espcn_fast/pretrained/espcn_x2.safetensors \\
        --out runs/x2_ranges.safetensors

writes the weights with their ranges (``a1_ranges``), the ``--init`` of a
quantization-aware fine-tune in that arithmetic (``training.train --qat int8``
keeps the ranges of its ``--init``); ``training.adaround`` calibrates them
itself unless told to keep its ``--init``'s.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

import torch

from espcn_fast.cli import OneLineParser
from espcn_fast.color import rgb_to_y
from espcn_fast.data_dir import find_data_dir
from espcn_fast.evaluate import make_lr
from espcn_fast.model import A1_RANGES_KEY, ESPCN
from espcn_fast.reduced_precision import int8_layer1
from espcn_fast.weights import WeightsError, load_weights, save_weights

from .data import TrainingDataError, load_folder, split_validation
from .train import one_line


@torch.no_grad()
def calibrate_a1_ranges(w1: torch.Tensor, b1: torch.Tensor, scale: int, images: Iterable[torch.Tensor]) -> torch.Tensor:
    """Per channel of layer 1 (``w1``, ``b1``), the largest ``|tanh|`` over the LR Y of ``images``
    (uint8 RGB HR, made LR as the evaluation does), as float32 in (0, 1] (1 for a channel that
    stays at 0)."""
    peak = torch.zeros(w1.shape[0])
    seen = False
    for hr in images:
        y = rgb_to_y(make_lr(hr, scale)[None]).float()
        a = torch.tanh(int8_layer1(y, w1.detach().float(), b1.detach().float()))
        peak = torch.maximum(peak, a.abs().amax(dim=(0, 2, 3)))
        seen = True
    if not seen:
        raise ValueError("calibrate_a1_ranges: no images to calibrate on")
    return torch.where(peak > 0, peak.clamp(max=1.0), torch.ones_like(peak))


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m training.a1_ranges", description=__doc__.splitlines()[0])
    p.add_argument("weights", type=Path, help="float weights (safetensors or ESPCN-PyTorch checkpoint)")
    p.add_argument("--scale", type=int, required=True)
    p.add_argument("--out", type=Path, required=True, help="the weights with their a1_ranges (safetensors)")
    p.add_argument("--data", type=Path, help="folder of HR training images (default: <data>/T91)")
    p.add_argument("--val-count", type=int, default=5, help="images held out for validation, left out here too")
    args = p.parse_args(argv)
    if args.val_count < 0:
        p.error(f"--val-count must be >= 0, got {args.val_count}")
    try:
        state = load_weights(args.weights)
        model = ESPCN(args.scale)
        model.load_state_dict(state)
        data = args.data if args.data is not None else find_data_dir() / "T91"
        train_images, _ = split_validation(load_folder(data), args.val_count)
        first = model.feature_maps[0]
        ranges = calibrate_a1_ranges(first.weight, first.bias, args.scale, train_images)
        meta = {"scale": str(args.scale), "source": Path(args.weights).as_posix()}
        save_weights({**state, A1_RANGES_KEY: ranges}, args.out, meta)
    except (TrainingDataError, WeightsError, ValueError, OSError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    print(f"{args.out}: a1_ranges {float(ranges.min()):.3f}-{float(ranges.max()):.3f}, mean {float(ranges.mean()):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
