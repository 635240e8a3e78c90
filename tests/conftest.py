"""Shared fixtures: the data folder, small random images and models."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CPU emulator of the CUDA kernels (tests/cuda_emulator.py), built once a run."""
    from . import cuda_emulator

    return cuda_emulator.build(tmp_path_factory, "tests/cpp/emulate_kernels.cpp", "emulate_kernels")


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


@pytest.fixture
def train_dir(tmp_path: Path) -> Path:
    """A folder of three small random images, for training runs in tests."""
    from espcn_fast.image_io import write_image

    folder = tmp_path / "train"
    folder.mkdir()
    for i, (h, w) in enumerate([(70, 64), (66, 80), (90, 72)]):
        write_image(random_rgb(h, w, seed=i), folder / f"img{i}.png")
    return folder


@pytest.fixture
def x3_init(tmp_path: Path) -> Path:
    """The shipped x3 float weights in a file of their own (an ``--init`` for training runs)."""
    from espcn_fast.model import ESPCN
    from espcn_fast.weights import save_weights

    path = tmp_path / "init.safetensors"
    save_weights(ESPCN.from_pretrained(3).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def local_ray():
    """A real Ray cluster on this machine (2 CPUs) for a test module's cluster jobs."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def ray_process_ids(name: str) -> list[int]:
    """The ids of this machine's Ray worker processes now running ``name`` (an actor class or a task's
    function: Ray shows it as ``ray::NAME`` in the process's command line)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(f"ray::{name}".encode()):
                pids.append(int(entry))
    return pids


def kill_one_ray_process(name: str, killed: list[int]) -> None:
    """SIGKILL the first Ray worker process running ``name``, once: its id is added to ``killed``."""
    pids = [] if killed else ray_process_ids(name)
    if pids:
        os.kill(pids[0], signal.SIGKILL)
        killed.append(pids[0])


@contextmanager
def polling(step: Callable[[], None], every: float = 0.01) -> Iterator[None]:
    """Calls ``step`` on a thread every ``every`` seconds while the block runs (a watcher of a job)."""
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            step()
            stop.wait(every)

    watcher = threading.Thread(target=run, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
