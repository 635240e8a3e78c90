"""What every kernel test needs: random models (never zeros), their float64
reference, and op outputs poisoned with NaN before the kernel writes them."""

from __future__ import annotations

from contextlib import contextmanager

import torch

from espcn_fast import ESPCN


@contextmanager
def poisoned_outputs():
    """Fresh op outputs are filled with NaN, so an element the kernel skips shows up."""
    old = torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old[0])
        torch.utils.deterministic.fill_uninitialized_memory = old[1]


def random_model(scale: int, seed: int = 0) -> ESPCN:
    """Random weights and biases (never zeros), large enough to exercise tanh's whole range."""
    g = torch.Generator().manual_seed(seed)
    model = ESPCN(scale)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.dim() > 1 else 0.5))
    return model.eval()


def weights(model: ESPCN) -> list[torch.Tensor]:
    return [t.detach() for t in model.state_dict().values()]


def reference64(model: ESPCN, x: torch.Tensor, clamp: bool = False) -> torch.Tensor:
    with torch.no_grad():
        out = model.double()(x.double())
    model.float()
    return out.clamp(0, 1) if clamp else out
