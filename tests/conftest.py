"""Shared fixtures: the data folder, small random images and models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from espcn_fast.data_dir import find_data_dir


@pytest.fixture(scope="session")
def data_dir() -> Path:
    try:
        return find_data_dir()
    except FileNotFoundError as exc:
        pytest.skip(f"the image sets are not here: {exc}")


@pytest.fixture(autouse=True)
def _seeded_global_rng(request: pytest.FixtureRequest) -> None:
    """Random, but the same on every run: a test's unseeded torch.rand draws depend on its name
    only, so a failure in CI reproduces here."""
    import zlib

    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def random_rgb(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth-ish random uint8 RGB image (never constant), ``(3, h, w)``."""
    from espcn_fast.benchmark.synthetic_video import scene

    return torch.from_numpy(scene(h, w, seed)).permute(2, 0, 1).contiguous()
