"""Loading the training folder and holding out validation images."""

from __future__ import annotations

import os

import torch

from espcn_fast.image_io import ImageReadError, list_images, read_image


class TrainingDataError(ValueError):
    """Training inputs that cannot be used: a missing, empty or unreadable folder, an image
    too small to validate on, or settings that do not fit the run in ``--out``."""


def load_folder(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every image of ``folder`` as uint8 RGB ``(3, H, W)``, keyed by file name."""
    try:
        paths = list_images(folder, "training data folder")
    except FileNotFoundError as exc:
        raise TrainingDataError(str(exc)) from None
    images = {}
    for path in paths:
        try:
            images[path.name] = read_image(path)
        except ImageReadError as exc:
            raise TrainingDataError(str(exc)) from None
    return images


def split_validation(images: dict[str, torch.Tensor], count: int) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """Hold out ``count`` images, evenly spread over the sorted names (deterministic)."""
    names = sorted(images)
    if count <= 0:
        return [images[n] for n in names], {}
    if count >= len(names):
        raise TrainingDataError(
            f"cannot hold out {count} validation images from {len(names)}: nothing left to train on"
        )
    step = len(names) / count
    held = {names[int(i * step)] for i in range(count)}
    return [images[n] for n in names if n not in held], {n: images[n] for n in sorted(held)}
