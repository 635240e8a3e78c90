"""The evaluation protocol of SR papers: modcrop, bicubic LR, Y only, shaved PSNR/SSIM.

Used by training (validation), ``espcn-fast eval`` and the benchmarks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .color import rgb_to_y
from .data_dir import find_data_dir
from .image_io import list_images, read_image
from .metrics import psnr, ssim
from .model import ESPCN, SuperResolver
from .precision_model import PrecisionESPCN
from .quantize import quantize
from .resize import imresize, modcrop


@dataclass
class ImageScore:
    """PSNR (dB) and SSIM of one image, on shaved Y."""

    name: str
    psnr: float
    ssim: float


@dataclass
class SetScore:
    """The scores of a test set's images; ``psnr`` and ``ssim`` are their means."""

    name: str
    images: list[ImageScore] = field(default_factory=list)

    @property
    def psnr(self) -> float:
        return sum(i.psnr for i in self.images) / len(self.images)

    @property
    def ssim(self) -> float:
        return sum(i.ssim for i in self.images) / len(self.images)


def make_lr(hr_rgb: torch.Tensor, scale: int) -> torch.Tensor:
    """The protocol's LR input: MATLAB bicubic ``imresize(modcrop(hr), 1/scale)``, uint8."""
    return imresize(modcrop(hr_rgb, scale), 1.0 / scale)


@torch.no_grad()
def score_image(
    model: SuperResolver, hr_rgb: torch.Tensor, scale: int, lr_rgb: torch.Tensor | None = None
) -> tuple[float, float]:
    """PSNR and SSIM of ``model`` on one uint8 RGB image pair (LR made if not given)."""
    sr_y, hr_y = _sr_and_hr_y(model, hr_rgb, scale, lr_rgb)
    return psnr(sr_y, hr_y, shave=scale), ssim(sr_y, hr_y, shave=scale)


@torch.no_grad()
def psnr_image(model: SuperResolver, hr_rgb: torch.Tensor, scale: int, lr_rgb: torch.Tensor | None = None) -> float:
    """The PSNR of :func:`score_image` alone (SSIM costs most of a small image's scoring time)."""
    sr_y, hr_y = _sr_and_hr_y(model, hr_rgb, scale, lr_rgb)
    return psnr(sr_y, hr_y, shave=scale)


def _sr_and_hr_y(
    model: SuperResolver, hr_rgb: torch.Tensor, scale: int, lr_rgb: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The protocol's super-resolved Y (quantized to 8 bits) and HR Y (float64, 0-255)."""
    hr = modcrop(hr_rgb, scale)
    lr = make_lr(hr_rgb, scale) if lr_rgb is None else lr_rgb
    if lr.shape[-2] * scale != hr.shape[-2] or lr.shape[-1] * scale != hr.shape[-1]:
        raise ValueError(f"LR image {tuple(lr.shape)} is not HR {tuple(hr.shape)} / {scale}")
    device = next((p.device for p in getattr(model, "parameters", lambda: iter(()))()), torch.device("cpu"))
    lr_y = rgb_to_y(lr).unsqueeze(0).to(device)
    sr_y = quantize(model(lr_y)[0, 0]).cpu()
    return sr_y, rgb_to_y(hr)[0].to(torch.float64) * 255.0


def evaluate_folder(
    model: SuperResolver,
    hr_dir: str | os.PathLike,
    scale: int,
    lr_dir: str | os.PathLike | None = None,
    name: str | None = None,
    progress: bool = False,
) -> SetScore:
    """Score every image of ``hr_dir``; LR files come from ``lr_dir`` when that folder exists (then it
    must hold every image's: a set scored half on given LR files and half on our resize would mix
    two protocols), from :func:`make_lr` otherwise. Errors name the image."""
    hr_dir = Path(hr_dir)
    paths = list_images(hr_dir, "evaluation folder")
    lr_dir = Path(lr_dir) if lr_dir is not None and Path(lr_dir).is_dir() else None
    missing = [p.name for p in paths if lr_dir is not None and not (lr_dir / p.name).is_file()]
    if missing:
        raise ValueError(
            f"the LR folder {lr_dir} lacks {', '.join(missing)}: give every LR input there, "
            "or remove the folder to make them all with the bicubic resize"
        )
    result = SetScore(name or hr_dir.name)
    iterator: Iterable[Path] = paths
    if progress:
        from tqdm import tqdm

        iterator = tqdm(paths, desc=f"{result.name} x{scale}", leave=False)
    for path in iterator:
        lr = read_image(lr_dir / path.name) if lr_dir is not None else None
        try:
            p, s = score_image(model, read_image(path), scale, lr)
        except ValueError as exc:  # too small for SSIM, LR of the wrong size, ...
            raise ValueError(f"{path}: {exc}") from None
        result.images.append(ImageScore(path.stem, p, s))
    return result


def evaluate_sets(
    model: SuperResolver,
    scale: int,
    sets: Iterable[str] = ("Set5", "Set14"),
    data_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> list[SetScore]:
    """Score the standard sets with their standard LR inputs (``LR_bicubic/<set>/x<r>``)."""
    root = find_data_dir(data_dir)
    return [evaluate_folder(model, root / s, scale, root / "LR_bicubic" / s / f"x{scale}", s, progress) for s in sets]


def evaluate_precision(
    model: ESPCN,
    precision: str,
    sets: Iterable[str] = ("Set5", "Set14"),
    data_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> list[SetScore]:
    """Score ``model``'s weights in the CPU kernels' ``precision`` arithmetic ("fp32", "bf16", "int8").

    Runs :func:`~espcn_fast.reduced_precision.forward` in float64, so the scores are those of the
    precision's roundings alone (the reference the kernels are tested against), on the standard sets.
    """
    reference = PrecisionESPCN(model, precision, dtype=torch.float64)
    return evaluate_sets(reference, model.scale, sets, data_dir, progress)
