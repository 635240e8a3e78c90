"""Learned rounding (AdaRound) of the int8 weights of layers 2 and 3, end to end on T91 patches.

    python -m training.adaround --scale 3 --init runs/x3_qat_int8_distill/best.safetensors \\
        --teacher espcn_fast/pretrained/espcn_x3.safetensors --out runs/x3_adaround

The int8 arithmetic (:mod:`espcn_fast.reduced_precision`) is unchanged: the
weights of layers 2 and 3 stay ``q * s`` with ``s = max |w| / 127`` per output
channel, and the scales ``s`` are those of the ``--init`` weights. What is
learned is whether each weight rounds down or up: ``q = floor(w / s) + h(V)``
with ``h = clip(1.2 sigmoid(V) - 0.1, 0, 1)`` trained together with the float
layer-1 weights and every bias, with a regularizer that pushes every ``h`` to 0
or 1 (Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training
Quantization"). Each channel's largest-magnitude weight is not learned, so the
scale the kernels recompute from the written weights is bit for bit ``s``.

By default (``--a1-ranges calibrate``) layer 1's int8 ranges are calibrated
first on the training images (:mod:`training.a1_ranges`; ``init``: those the
``--init`` weights carry) and written with the weights: layer 1's channel c is then stored as ``round(127 a / r_c)`` and
layer 2 rounded as ``w * r_c``, whose scales and rounding are the ones kept
and learned (the written weights ``(w * r) / r`` reproduce them, their scales
to within float32 rounding).

Every ``--val-every`` steps the hard rounding (``h >= 0.5``) is scored in the
int8 arithmetic on the held-out T91 images; the best is written to
``<out>/best.safetensors`` (float weights whose int8 quantization is the
model, for :mod:`training.ship_int8`), with ``log.jsonl`` beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from espcn_fast.cli import OneLineParser
from espcn_fast.data_dir import find_data_dir
from espcn_fast.evaluate import psnr_image
from espcn_fast.model import A1_RANGES_KEY, ESPCN
from espcn_fast.precision_model import PrecisionESPCN
from espcn_fast.reduced_precision import (
    WEIGHT_LEVELS,
    code_multipliers,
    fake_quantize_activation,
    int8_layer1,
    quantize_weight,
    ranged_weight_on_codes,
    weight_scales,
)
from espcn_fast.weights import WeightsError, load_weights, save_weights

from .a1_ranges import calibrate_a1_ranges
from .data import TrainingDataError, load_folder, split_validation
from .patches import PatchSampler
from .train import check_out_folder, one_line

# The stretched sigmoid of AdaRound: h reaches 0 and 1 exactly at finite V.
ZETA, GAMMA = 1.1, -0.1
# The layers whose rounding is learned, by state-dict key (layer 1 is rounded to nearest on its 16-bit grid).
ROUNDED_KEYS = ("feature_maps.2.weight", "sub_pixel.0.weight")


def rectified_sigmoid(v: torch.Tensor) -> torch.Tensor:
    """``h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1)``."""
    return (torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def rounding_regularizer(h: torch.Tensor, beta: float) -> torch.Tensor:
    """``sum(1 - |2h - 1|^beta)``: zero once every ``h`` is 0 or 1; a high ``beta`` leaves the middle free."""
    return (1.0 - (2.0 * h - 1.0).abs().pow(beta)).sum()


def beta_at(step: int, total: int, warmup: float, start: float, end: float) -> float | None:
    """The regularizer's ``beta`` at ``step``: ``None`` (no regularizer) in the warm-up fraction, then
    decaying linearly from ``start`` to ``end``."""
    first = int(warmup * total)
    if step < first:
        return None
    t = (step - first) / max(total - first, 1)
    return start + (end - start) * min(t, 1.0)


def weights_on_grid(q: torch.Tensor, scales: torch.Tensor, peaks: torch.Tensor) -> torch.Tensor:
    """Float32 weights whose int8 quantization is ``q`` with exactly ``scales`` (``max |w| / 127``).

    ``q * s`` alone could come out one ulp above a channel's peak ``max |w|``
    (``127 * (m / 127) != m`` in float32) and change the scale the kernels
    recompute, so every ``|q| = 127`` is written as the peak itself.
    """
    s = scales[:, None, None, None]
    w = q.to(torch.float32) * s
    full = q.abs() == WEIGHT_LEVELS
    return torch.where(full, torch.sign(q).to(torch.float32) * peaks[:, None, None, None], w)


class AdaRoundWeight(nn.Module):
    """A conv weight ``s * (floor(w / s) + h(V))`` with its per-channel scales ``s`` fixed.

    Args:
        weight: the ``(C_out, C_in, k, k)`` float weight to round; its scales
            (:func:`~espcn_fast.reduced_precision.weight_scales`) are kept.

    ``V`` starts where ``h`` equals the fractional part of ``w / s``, so the
    soft weight starts at ``weight`` and the hard rounding at round-to-nearest.
    Each channel's largest-magnitude elements keep their rounding (``+-127``).
    """

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        if weight.dim() != 4:
            raise ValueError(
                f"AdaRoundWeight: a (C_out, C_in, k, k) conv weight is needed, got shape {tuple(weight.shape)}"
            )
        w = weight.detach().to(torch.float32)
        if not bool(torch.isfinite(w).all()):
            raise ValueError("AdaRoundWeight: the weight holds NaN or infinite values")
        scales = weight_scales(w)
        peaks = w.abs().amax(dim=(1, 2, 3))
        if not bool((peaks > 0).all()):
            raise ValueError("AdaRoundWeight: an output channel is all zero (it has no int8 scale to keep)")
        q_nearest, _ = quantize_weight(w)
        ratio = w / scales[:, None, None, None]  # float32, as the kernels divide
        floor = torch.floor(ratio)
        # The start's hard rounding is the kernels' (half to even): quantization-aware training leaves
        # many weights on a tie, where h = 0.5 alone would round up.
        up = q_nearest.to(torch.float32) > floor
        rest = torch.where(up, (ratio - floor).clamp(0.5 + 1e-3, 1.0), (ratio - floor).clamp(0.0, 0.5 - 1e-3))
        self.register_buffer("scales", scales)
        self.register_buffer("peaks", peaks)
        self.register_buffer("floor", floor)
        # The peaks are not learned: their rounding fixes the scale.
        self.register_buffer("fixed", w.abs() == peaks[:, None, None, None])
        self.register_buffer("fixed_q", q_nearest.to(torch.float32))
        p = ((rest - GAMMA) / (ZETA - GAMMA)).clamp(1e-4, 1 - 1e-4)
        self.v = nn.Parameter(torch.log(p / (1 - p)))

    def h(self) -> torch.Tensor:
        """The soft rounding in [0, 1] of every element."""
        return rectified_sigmoid(self.v)

    def soft(self) -> torch.Tensor:
        """The weight with the soft rounding (what training sees; gradients reach ``V``)."""
        q = torch.where(self.fixed, self.fixed_q, self.floor + self.h())
        return q.clamp(-WEIGHT_LEVELS, WEIGHT_LEVELS) * self.scales[:, None, None, None]

    def hard_q(self) -> torch.Tensor:
        """The int8 values of the hard rounding (``h >= 0.5``), as float32 integers."""
        up = (self.h() >= 0.5).to(torch.float32)
        q = torch.where(self.fixed, self.fixed_q, self.floor + up)
        return q.clamp(-WEIGHT_LEVELS, WEIGHT_LEVELS).detach()

    def hard(self) -> torch.Tensor:
        """Float32 weights whose int8 quantization is :meth:`hard_q` with the kept scales."""
        return weights_on_grid(self.hard_q(), self.scales, self.peaks)

    def regularizer(self, beta: float) -> torch.Tensor:
        """The rounding regularizer over the learned elements."""
        return rounding_regularizer(self.h()[~self.fixed], beta)


class AdaRoundESPCN(nn.Module):
    """ESPCN in the int8 arithmetic with learned rounding of layers 2 and 3.

    Layer 1's weight and every bias are float parameters (copied from ``model``);
    the tanh outputs are rounded to ``k / 127`` with straight-through gradients,
    as quantization-aware training does.
    """

    def __init__(self, model: ESPCN, a1_ranges: torch.Tensor | None = None) -> None:
        super().__init__()
        first, second, last = model.feature_maps[0], model.feature_maps[2], model.sub_pixel[0]
        self.scale = model.scale
        self.w1 = nn.Parameter(first.weight.detach().clone().float())
        self.b1 = nn.Parameter(first.bias.detach().clone().float())
        self.b2 = nn.Parameter(second.bias.detach().clone().float())
        self.b3 = nn.Parameter(last.bias.detach().clone().float())
        # Layer 2 is rounded as the kernels quantize it: times the ranges of its input channels.
        ranges = torch.ones(first.out_channels) if a1_ranges is None else a1_ranges.detach().float()
        self.register_buffer("a1_ranges", ranges)
        self.w2 = AdaRoundWeight(second.weight.detach().float() * ranges[None, :, None, None])
        self.w3 = AdaRoundWeight(last.weight)

    def float_parameters(self) -> list[nn.Parameter]:
        return [self.w1, self.b1, self.b2, self.b3]

    def rounding_parameters(self) -> list[nn.Parameter]:
        return [self.w2.v, self.w3.v]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, H, W)`` LR -> HR with the soft rounding (training's forward)."""
        w2, w3 = ranged_weight_on_codes(self.w2.soft(), self.a1_ranges), self.w3.soft()
        y1 = int8_layer1(x, self.w1, self.b1, straight_through=True)
        m1 = code_multipliers(self.a1_ranges, self.w1.shape[0])
        a1 = fake_quantize_activation(torch.tanh(y1), straight_through=True, multipliers=m1)
        a2 = fake_quantize_activation(torch.tanh(F.conv2d(a1, w2, self.b2, padding=w2.shape[-1] // 2)), True)
        return F.pixel_shuffle(F.conv2d(a2, w3, self.b3, padding=w3.shape[-1] // 2), self.scale)

    def regularizer(self, beta: float) -> torch.Tensor:
        return self.w2.regularizer(beta) + self.w3.regularizer(beta)

    def rounded_elements(self) -> int:
        return int((~self.w2.fixed).sum() + (~self.w3.fixed).sum())

    def undecided(self, margin: float = 0.01) -> int:
        """How many learned ``h`` are still more than ``margin`` from 0 and 1."""
        hs = [self.w2.h()[~self.w2.fixed], self.w3.h()[~self.w3.fixed]]
        return int(sum(((h > margin) & (h < 1 - margin)).sum() for h in hs))

    def hard_state_dict(self) -> dict[str, torch.Tensor]:
        """The ESPCN state dict of the hard rounding, with its ``a1_ranges``: run in the int8 arithmetic,
        it is this model (layer 2's weights divided by the ranges, which the kernels multiply back)."""
        return {
            "feature_maps.0.weight": self.w1.detach().clone(),
            "feature_maps.0.bias": self.b1.detach().clone(),
            "feature_maps.2.weight": self.w2.hard() / self.a1_ranges[None, :, None, None],
            "feature_maps.2.bias": self.b2.detach().clone(),
            "sub_pixel.0.weight": self.w3.hard(),
            "sub_pixel.0.bias": self.b3.detach().clone(),
            A1_RANGES_KEY: self.a1_ranges.clone(),
        }


def hard_model(net: AdaRoundESPCN) -> ESPCN:
    """A float ESPCN holding :meth:`AdaRoundESPCN.hard_state_dict`."""
    model = ESPCN(net.scale)
    model.load_state_dict(net.hard_state_dict())
    return model.eval()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(prog="python -m training.adaround", description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=int, required=True)
    p.add_argument("--init", type=Path, required=True, help="the weights whose int8 rounding is learned")
    p.add_argument(
        "--teacher",
        type=Path,
        help="float weights whose output is the target (default: the HR patches)",
    )
    p.add_argument("--data", type=Path, help="folder of HR training images (default: <data>/T91)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--patch", type=int, default=17)
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate of the rounding variables V")
    p.add_argument("--float-lr", type=float, default=1e-5, help="Adam learning rate of layer 1 and the biases")
    p.add_argument("--reg", type=float, default=1000.0, help="weight of the rounding regularizer")
    p.add_argument("--warmup", type=float, default=0.1, help="fraction of the steps without the regularizer")
    p.add_argument("--beta", type=float, nargs=2, default=(20.0, 2.0), metavar=("START", "END"))
    p.add_argument(
        "--a1-ranges",
        choices=("calibrate", "init", "full"),
        default="calibrate",
        help="layer 1's int8 ranges: calibrated on the training images (default), the --init weights' own "
        "(those it was fine-tuned in), or tanh's full [-1, 1]",
    )
    p.add_argument("--val-count", type=int, default=5)
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    args = p.parse_args(argv)
    for name in ("scale", "steps", "batch", "patch", "val_count", "val_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("lr", "float_lr", "reg"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value >= 0):
            p.error(f"--{name.replace('_', '-')} must be >= 0 and finite, got {value}")
    if not 0.0 <= args.warmup < 1.0:
        p.error(f"--warmup must be in [0, 1), got {args.warmup}")
    if not all(math.isfinite(b) and b > 0 for b in args.beta):
        p.error(f"--beta must be positive and finite, got {' '.join(map(str, args.beta))}")
    if args.threads < 0:
        p.error(f"--threads must be >= 0, got {args.threads}")
    return args


def validate(net: AdaRoundESPCN, images: dict[str, torch.Tensor]) -> float:
    """Mean PSNR of the hard rounding, in the int8 arithmetic, over the held-out images."""
    scored = PrecisionESPCN(hard_model(net), "int8")
    return sum(psnr_image(scored, img, net.scale) for img in images.values()) / len(images)


def run(args: argparse.Namespace) -> float:
    """Train, validate and write ``args.out``; returns the best validation PSNR."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    check_out_folder(args.out, resume=False, overwrite=args.overwrite)
    data = args.data if args.data is not None else find_data_dir() / "T91"
    train_images, val_images = split_validation(load_folder(data), args.val_count)
    sampler = PatchSampler(train_images, args.scale, args.patch, seed=args.seed)
    init = ESPCN(args.scale)
    init.load_state_dict(load_weights(args.init))
    ranges = None
    if args.a1_ranges == "calibrate":
        first = init.feature_maps[0]
        ranges = calibrate_a1_ranges(first.weight, first.bias, args.scale, train_images)
    elif args.a1_ranges == "init":
        if init.a1_ranges is None:
            raise ValueError(f"--a1-ranges init: {args.init} holds no a1_ranges")
        ranges = init.a1_ranges
    net = AdaRoundESPCN(init, ranges)
    teacher: ESPCN | None = None
    if args.teacher is not None:
        teacher = ESPCN(args.scale)
        teacher.load_state_dict(load_weights(args.teacher))
        teacher.requires_grad_(False).eval()
    optimizer = torch.optim.Adam(
        [{"params": net.rounding_parameters(), "lr": args.lr}, {"params": net.float_parameters(), "lr": args.float_lr}]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    log = open(args.out / "log.jsonl", "w")
    meta = {"scale": str(args.scale), "init": Path(args.init).as_posix()}
    best = validate(net, val_images)
    save_weights(net.hard_state_dict(), args.out / "best.safetensors", {**meta, "step": "0", "val_psnr": f"{best:.4f}"})
    print(f"step 0: val PSNR {best:.4f} dB (the init's rounding to nearest)", flush=True)
    log.write(json.dumps({"step": 0, "val_psnr": best}) + "\n")
    n = net.rounded_elements()
    start = time.time()
    recon_sum, count = 0.0, 0
    for step in range(1, args.steps + 1):
        lr_y, target = sampler.sample(args.batch)
        if teacher is not None:
            with torch.no_grad():
                target = teacher(lr_y)
        # In 8-bit grey levels squared, so that --reg weighs against an MSE of order 1.
        recon = F.mse_loss(net(lr_y), target) * 255.0**2
        beta = beta_at(step - 1, args.steps, args.warmup, *args.beta)
        loss = recon if beta is None else recon + args.reg * net.regularizer(beta) / n
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        recon_sum += recon.item()
        count += 1
        if step % args.val_every == 0 or step == args.steps:
            val = validate(net, val_images)
            record: dict[str, Any] = {
                "step": step,
                "loss": recon_sum / count,
                "beta": beta,
                "undecided": net.undecided(),
                "val_psnr": val,
                "seconds": round(time.time() - start, 1),
            }
            recon_sum, count = 0.0, 0
            if val > best:
                best = val
                save_weights(
                    net.hard_state_dict(),
                    args.out / "best.safetensors",
                    {**meta, "step": str(step), "val_psnr": f"{val:.4f}"},
                )
            log.write(json.dumps(record) + "\n")
            log.flush()
            print(
                f"step {step}: loss {record['loss']:.4f}, beta {beta}, undecided {record['undecided']}/{n}, "
                f"val PSNR {val:.4f} dB (best {best:.4f}), {record['seconds']} s",
                flush=True,
            )
    log.close()
    save_weights(net.hard_state_dict(), args.out / "last.safetensors", {**meta, "step": str(args.steps)})
    return best


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except (TrainingDataError, WeightsError, ValueError, OSError, RuntimeError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
