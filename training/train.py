"""Train ESPCN on T91 (or any folder of images), as the paper, resumable and distributed.

    python -m training.train --scale 3 --out runs/x3
    torchrun --nproc_per_node 2 -m training.train --scale 3 --out runs/x3

One epoch is ``--steps`` optimiser steps of ``--batch`` random patches; each
epoch ends with a validation PSNR on T91 images held out of training and
writes ``last.pt`` and, when validation improved (every epoch when
``--val-count 0``), ``best.pt`` and ``best.safetensors``. ``--resume``
continues from ``last.pt`` exactly; a folder that already holds a run is
refused unless ``--resume`` or ``--overwrite`` says what to do with it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from espcn_fast.cli import OneLineParser
from espcn_fast.data_dir import find_data_dir
from espcn_fast.devices import device_problem
from espcn_fast.evaluate import score_image
from espcn_fast.model import ESPCN
from espcn_fast.precision_model import PrecisionESPCN
from espcn_fast.weights import WeightsError, load_weights, save_weights

from .checkpoint import load_checkpoint, rng_state, save_atomic, set_rng_state
from .data import TrainingDataError, load_folder, split_validation
from .patches import PatchSampler

# The files a run writes into its folder; any of them there means a run is.
RUN_FILES = ("last.pt", "last.safetensors", "best.pt", "best.safetensors", "log.jsonl")
# The arguments that change what a run computes: --resume must find them as they were.
# (Not --init: a resumed run takes its weights from last.pt, whatever it started from.)
RESULT_SETTINGS = (
    "scale",
    "data",
    "val_count",
    "seed",
    "patch",
    "batch",
    "steps",
    "epochs",
    "optimizer",
    "lr",
    "lr_min",
    "schedule",
    "last_layer_lr",
    "qat",
    "distill",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(
        prog="python -m training.train",
        description="Train ESPCN on the Y channel of T91 patches (MSE), as Shi et al. 2016.",
    )
    p.add_argument("--scale", type=int, required=True, help="upscaling factor (2, 3, 4, ...)")
    p.add_argument("--data", type=Path, help="folder of HR training images (default: <data>/T91)")
    p.add_argument("--out", type=Path, help="output folder (default: runs/x<scale>)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--steps", type=int, default=500, help="optimiser steps per epoch")
    p.add_argument("--batch", type=int, default=64, help="patches per step (per process)")
    p.add_argument("--patch", type=int, default=17, help="LR patch side (HR side = patch * scale)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--lr", type=float, default=3e-3, help="initial learning rate")
    p.add_argument("--lr-min", type=float, default=1e-5, help="final learning rate")
    p.add_argument(
        "--schedule",
        choices=("cosine", "exponential"),
        default="cosine",
        help="decay from --lr to --lr-min over all steps",
    )
    p.add_argument(
        "--last-layer-lr", type=float, default=0.1, help="learning-rate multiplier of the last layer (the paper: 0.1)"
    )
    p.add_argument(
        "--val-count",
        type=int,
        default=5,
        help="T91 images held out for validation (0: none; best.* is then the last epoch)",
    )
    p.add_argument(
        "--qat",
        choices=("int8", "bf16"),
        default=None,
        help="quantization-aware training: train and validate the CPU kernels' arithmetic in this precision "
        "(straight-through rounding); start from float weights with --init",
    )
    p.add_argument(
        "--distill",
        action="store_true",
        help="with --qat: learn to reproduce the --init model's output rather than the HR patches",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument(
        "--overwrite", action="store_true", help="start a new run in an --out that holds one, replacing its files"
    )
    p.add_argument(
        "--init",
        type=Path,
        metavar="WEIGHTS",
        help="start from these weights (safetensors or ESPCN-PyTorch checkpoint) instead of random",
    )
    p.add_argument(
        "--stop-after",
        type=int,
        default=0,
        metavar="N",
        help="stop after N epochs in this run (continue later with --resume)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--save-rank-weights", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.scale < 1:
        p.error(f"--scale must be >= 1, got {args.scale}")
    for name in ("epochs", "steps", "batch", "patch"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("val_count", "stop_after", "threads"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    for name in ("lr", "lr_min", "last_layer_lr"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):  # nan > 0 is False too
            p.error(f"--{name.replace('_', '-')} must be positive and finite, got {value}")
    if args.lr_min > args.lr:
        p.error(f"--lr-min must be <= --lr (the schedule decays), got {args.lr_min} > {args.lr}")
    if args.distill and args.qat is None:
        p.error("--distill trains a --qat model to reproduce its float --init: pass --qat")
    if args.distill and args.init is None and not args.resume:
        p.error("--distill reproduces the --init model: pass --init")
    if args.resume and args.overwrite:
        p.error("--resume continues the run in --out, --overwrite replaces it: pass one")
    if args.device is not None:
        problem = device_problem(args.device)
        if problem:
            p.error(f"--device {args.device}: {problem}")
    if args.out is None:
        args.out = Path("runs") / f"x{args.scale}"
    if args.out.exists() and not args.out.is_dir():
        p.error(f"--out {args.out} is not a folder")
    return args


def one_line(exc: BaseException) -> str:
    """``exc``'s message on one line (torch's messages can span many)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def check_out_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to write a new run over an earlier one unless told to.

    The default ``--out`` (``runs/x<scale>``) holds the shipped runs, so a
    forgotten ``--out`` must not replace them.
    """
    if resume or overwrite:
        return
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found:
        raise TrainingDataError(
            f"{out} already holds a run ({', '.join(found)}); pass --resume to continue it, "
            f"another --out to start a new one, or --overwrite to replace it"
        )


def _setting(args: dict[str, Any], key: str) -> Any:
    """A result-changing argument of ``args`` in a form that compares equal when the run is the same."""
    value = args.get(key)
    if key == "data":  # the same folder, however it is spelt (None: checkpoints from before it was recorded)
        value = Path(value if value is not None else find_data_dir() / "T91").resolve()
    return value


def settings_changed(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``--flag old (now new)`` for every result-changing argument that differs."""

    def show(value: Any) -> str:
        return "none" if value is None else str(value)

    changed = []
    for key in RESULT_SETTINGS:
        old, new = _setting(saved, key), _setting(now, key)
        if old != new:
            changed.append(f"--{key.replace('_', '-')} {show(old)} (now {show(new)})")
    return changed


def check_validation_images(model: ESPCN, images: dict[str, torch.Tensor], scale: int, folder: Path) -> None:
    """Score every held-out image once now, so that one too small fails here and not after epoch 1.

    score_image is the validation itself, so its size rules (an LR image,
    SSIM's window after the border shave) are checked and not copied.
    """
    for name, img in images.items():
        try:
            score_image(model, img, scale)
        except ValueError as exc:
            h, w = img.shape[-2:]
            raise TrainingDataError(
                f"validation image {name} ({w}x{h}) is too small to score at x{scale} ({exc}); "
                f"remove it from {folder} or change --val-count"
            ) from None


def lr_factor(step: int, total: int, lr: float, lr_min: float, schedule: str) -> float:
    """Multiplier of the initial learning rate after ``step`` of ``total`` steps."""
    t = min(step / max(total, 1), 1.0)
    end = lr_min / lr
    if schedule == "exponential":
        return end**t
    return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * t))


def make_optimizer(model: ESPCN, args: argparse.Namespace) -> torch.optim.Optimizer:
    last = list(model.sub_pixel.parameters())
    rest = list(model.feature_maps.parameters())
    groups = [{"params": rest, "lr": args.lr}, {"params": last, "lr": args.lr * args.last_layer_lr}]
    if args.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=args.lr, momentum=0.9)
    return torch.optim.Adam(groups, lr=args.lr)


class Trainer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.out
        check_out_folder(self.out, args.resume, args.overwrite)
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.distributed:
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend)
            if self.device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
                torch.cuda.set_device(self.device)
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        if args.threads:
            torch.set_num_threads(args.threads)
        torch.manual_seed(args.seed)

        data = args.data if args.data is not None else find_data_dir() / "T91"
        # Recorded in full so that --resume can tell another folder from the same one.
        args.data = data.resolve()
        train_images, self.val_images = split_validation(load_folder(data), args.val_count)
        # Each process draws its own patches; the model starts identical everywhere.
        self.sampler = PatchSampler(train_images, args.scale, args.patch, seed=args.seed + 7919 * self.rank)
        self.model = ESPCN(args.scale)
        if args.init is not None:
            self.model.load_state_dict(load_weights(args.init))
        check_validation_images(self.scored_model(), self.val_images, args.scale, data)
        self.model.to(self.device)
        self.net: nn.Module = self.model
        if args.qat is not None:
            # The loss sees the reduced-precision model; the gradients reach the float parameters.
            self.net = PrecisionESPCN(self.model, args.qat, straight_through=True)
        if self.distributed:
            self.net = nn.parallel.DistributedDataParallel(self.model)
        self.optimizer = make_optimizer(self.model, args)
        total = args.epochs * args.steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, total, args.lr, args.lr_min, args.schedule)
        )
        self.epoch = 0
        self.best_psnr = -math.inf
        # A new run (--overwrite) starts its own log; a resumed one adds to it.
        self.log_mode = "a" if args.resume else "w"
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        if args.resume:
            self.resume()
        self.teacher: ESPCN | None = None
        if args.distill:
            if self.args.init is None:
                raise TrainingDataError("--distill: the run records no --init weights to reproduce; pass --init")
            self.teacher = ESPCN(args.scale)
            self.teacher.load_state_dict(load_weights(self.args.init))
            self.teacher.requires_grad_(False).eval().to(self.device)

    # -- state ---------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        samplers: list[Any] = [self.sampler.state_dict()]
        rngs: list[Any] = [rng_state()]
        if self.distributed:
            samplers = [None] * self.world
            rngs = [None] * self.world
            dist.all_gather_object(samplers, self.sampler.state_dict())
            dist.all_gather_object(rngs, rng_state())
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "best_psnr": self.best_psnr,
            "samplers": samplers,
            "rng": rngs,
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(self.args).items()},
        }

    def resume(self) -> None:
        path = self.out / "last.pt"
        ckpt = load_checkpoint(path)
        changed = settings_changed(ckpt["args"], vars(self.args))
        if changed:
            raise TrainingDataError(
                f"--resume: {path} was trained with other settings: {', '.join(changed)}; "
                f"use the same settings, or another --out for a new run"
            )
        if len(ckpt["samplers"]) != self.world or len(ckpt["rng"]) != self.world:
            raise TrainingDataError(f"--resume: checkpoint has {len(ckpt['samplers'])} process(es), now {self.world}")
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            self.sampler.load_state_dict(ckpt["samplers"][self.rank])
            set_rng_state(ckpt["rng"][self.rank])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise TrainingDataError(f"--resume: {path} does not fit this run: {one_line(exc)}") from None
        self.epoch = ckpt["epoch"]
        self.best_psnr = ckpt["best_psnr"]
        if self.args.init is None:  # the checkpoints keep saying which weights the run began from
            self.args.init = ckpt["args"].get("init")

    # -- work ------------------------------------------------------------------
    def scored_model(self) -> nn.Module:
        """What validation scores: the model, or with ``--qat`` its reduced-precision arithmetic
        (the same numbers as training's forward, without the straight-through gradients)."""
        if self.args.qat is None:
            return self.model
        return PrecisionESPCN(self.model, self.args.qat)

    def validate(self) -> float | None:
        """Mean PSNR over the held-out images; None when none are held out."""
        if not self.val_images:
            return None
        self.model.eval()
        scored = self.scored_model()
        scores = [score_image(scored, img, self.args.scale)[0] for img in self.val_images.values()]
        self.model.train()
        return sum(scores) / len(scores)

    def ranks_in_sync(self) -> bool:
        flat = torch.cat([p.detach().flatten() for p in self.model.parameters()])
        reference = flat.clone()
        dist.broadcast(reference, 0)
        same = torch.tensor([int(torch.equal(flat, reference))], device=flat.device)
        dist.all_reduce(same, op=dist.ReduceOp.MIN)
        return bool(same.item())

    def train_epoch(self) -> float:
        args = self.args
        bar = None
        if self.rank == 0 and not args.no_progress:
            from tqdm import tqdm

            bar = tqdm(
                total=args.steps,
                desc=f"x{args.scale} epoch {self.epoch + 1}/{args.epochs}",
                leave=False,
                dynamic_ncols=True,
            )
        loss_sum = torch.zeros((), dtype=torch.float64)
        self.model.train()
        for step in range(args.steps):
            lr, hr = self.sampler.sample(args.batch)
            lr, hr = lr.to(self.device), hr.to(self.device)
            if self.teacher is not None:
                # The float model's output is a target with no noise of its own: the loss measures
                # what the roundings cost, not the detail no 3-layer model predicts.
                with torch.no_grad():
                    hr = self.teacher(lr)
            loss = nn.functional.mse_loss(self.net(lr), hr)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            loss_sum += loss.detach().double().cpu()
            if bar is not None:
                bar.update(1)
                if step % 20 == 0:
                    mse = loss.item()
                    bar.set_postfix(loss=f"{mse:.2e}", psnr=f"{10 * math.log10(1 / max(mse, 1e-12)):.2f}")
        if bar is not None:
            bar.close()
        return (loss_sum / args.steps).item()

    def run(self) -> None:
        args = self.args
        log_path = self.out / "log.jsonl"
        if self.rank == 0 and self.sampler.skipped:
            print(f"note: {self.sampler.skipped} image(s) smaller than the HR crop are not used", file=sys.stderr)
        stop_at = min(args.epochs, self.epoch + args.stop_after) if args.stop_after else args.epochs
        while self.epoch < stop_at:
            start = time.time()
            loss = self.train_epoch()
            self.epoch += 1
            record: dict[str, Any] = {
                "epoch": self.epoch,
                "step": self.epoch * args.steps,
                "loss": loss,
                "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": round(time.time() - start, 3),
            }
            if self.distributed:
                record["ranks_in_sync"] = self.ranks_in_sync()
            state = self.state()  # collective under DDP: every rank takes part
            if self.rank == 0:
                val = self.validate()
                record["val_psnr"] = val
                # Without validation there is nothing to compare: keep the latest epoch.
                improved = val is None or val > self.best_psnr
                meta = {"scale": str(args.scale), "epoch": str(self.epoch)}
                if improved:
                    if val is not None:
                        self.best_psnr = val
                        state["best_psnr"] = val
                    save_atomic(state, self.out / "best.pt")
                    save_weights(
                        self.model.state_dict(),
                        self.out / "best.safetensors",
                        meta if val is None else {**meta, "val_psnr": f"{val:.4f}"},
                    )
                save_weights(self.model.state_dict(), self.out / "last.safetensors", meta)
                # last.pt last: if a write above fails, --resume redoes this epoch and writes them again.
                save_atomic(state, self.out / "last.pt")
                with open(log_path, self.log_mode) as f:
                    f.write(json.dumps(json_safe(record), allow_nan=False) + "\n")
                self.log_mode = "a"
                if val is None:
                    scored = "no validation (best.* is this epoch)"
                else:
                    scored = f"val PSNR {val:.3f} dB (best {self.best_psnr:.3f})"
                print(
                    f"x{args.scale} epoch {self.epoch}/{args.epochs}: loss {loss:.3e}, {scored}, "
                    f"{record['seconds']:.1f} s",
                    flush=True,
                )
            if self.distributed:
                # Every rank must agree on best_psnr for the next checkpoint.
                best = torch.tensor([self.best_psnr], dtype=torch.float64, device=self.device)
                dist.broadcast(best, 0)
                self.best_psnr = best.item()
        if args.save_rank_weights:
            save_weights(self.model.state_dict(), self.out / f"rank{self.rank}.safetensors")
        if self.distributed:
            dist.barrier()
            dist.destroy_process_group()


def json_safe(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with NaN and infinities as None: JSON has no such numbers (json.dumps would write NaN)."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        Trainer(args).run()
    except (TrainingDataError, WeightsError, ValueError, OSError, RuntimeError) as exc:
        # OSError covers a failed save (disk full, a folder in the way); RuntimeError torch's failures.
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last finished epoch is in last.pt (use --resume)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
