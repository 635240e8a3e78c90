"""Random training patches from HR images, with the LR made on the fly.

Each patch is cut with a margin of ``MARGIN`` LR pixels, augmented (flips and
90-degree rotations), shrunk with the MATLAB-compatible bicubic resize
(uint8 rounding after each pass, as the evaluation LR images were made) and
then cut to its centre. The margin makes the LR patch equal to the same
pixels of an LR made from the whole image, so the network never learns the
resize's border handling.
"""

from __future__ import annotations

import torch

from espcn_fast.color import rgb_to_y
from espcn_fast.resize import imresize

from .data import TrainingDataError

# The bicubic kernel shrinking by r spans 2 LR pixels on each side.
MARGIN = 2


class PatchSampler:
    """Draws batches of (LR Y, HR Y) patch pairs; all randomness from one generator."""

    def __init__(self, images: list[torch.Tensor], scale: int, lr_size: int = 17, seed: int = 0) -> None:
        if scale < 1:
            raise TrainingDataError(f"scale must be >= 1, got {scale}")
        if lr_size < 1:
            raise TrainingDataError(f"patch size must be >= 1, got {lr_size}")
        self.scale = scale
        self.lr_size = lr_size
        self.crop = (lr_size + 2 * MARGIN) * scale
        self.images = [img for img in images if min(img.shape[-2:]) >= self.crop]
        if not self.images:
            largest = max((min(img.shape[-2:]) for img in images), default=0)
            raise TrainingDataError(
                f"an HR crop of {self.crop}x{self.crop} (a {lr_size}x{lr_size} LR patch at x{scale} "
                f"plus a {MARGIN}-pixel margin) is larger than every training image "
                f"(the largest short side is {largest}); use a smaller --patch"
            )
        self.skipped = len(images) - len(self.images)
        # Sample images in proportion to their area, as cutting all sub-images would.
        self.weights = torch.tensor([float(img.shape[-1] * img.shape[-2]) for img in self.images], dtype=torch.float64)
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(LR Y (B, 1, p, p), HR Y (B, 1, p*r, p*r))`` as float32 on [0, 1]."""
        g = self.generator
        picks = torch.multinomial(self.weights, batch, replacement=True, generator=g).tolist()
        crops = []
        for i in picks:
            img = self.images[i]
            h, w = img.shape[-2:]
            top = int(torch.randint(0, h - self.crop + 1, (1,), generator=g))
            left = int(torch.randint(0, w - self.crop + 1, (1,), generator=g))
            crop = img[:, top : top + self.crop, left : left + self.crop]
            aug = int(torch.randint(0, 8, (1,), generator=g))
            crop = torch.rot90(crop, aug % 4, dims=(1, 2))
            if aug >= 4:
                crop = crop.flip(2)
            crops.append(crop)
        hr = torch.stack(crops)
        lr = imresize(hr, 1.0 / self.scale)
        m, p, r = MARGIN, self.lr_size, self.scale
        lr = lr[..., m : m + p, m : m + p]
        hr = hr[..., m * r : (m + p) * r, m * r : (m + p) * r]
        return rgb_to_y(lr).float(), rgb_to_y(hr).float()

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
