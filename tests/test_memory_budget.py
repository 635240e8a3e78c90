"""Host memory: images tile by themselves when the whole would pass the budget, outputs that cannot fit are
refused before any work, and the peak of a real run stays under the budget."""

from __future__ import annotations

import struct
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import espcn_fast.upscale as up
from espcn_fast import FastESPCN, memory_budget
from espcn_fast.cli import main
from espcn_fast.memory_budget import (
    MIN_TILE,
    WORK_BYTES,
    MemoryBudgetError,
    fixed_bytes,
    format_size,
    parse_size,
    plan_tile,
)
from espcn_fast.upscale import upscale_image

from .conftest import random_rgb
from .kernel_checks import random_model
from .peak_memory import peak_growth


@pytest.mark.parametrize(
    "text, value",
    [
        ("512M", 512 * 2**20),
        ("4G", 4 * 2**30),
        ("1.5GiB", 3 * 2**29),
        ("2000000000", 2_000_000_000),
        ("64 kb", 64 * 1024),
        ("1t", 2**40),
    ],
)
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "lots", "4X", "-1G", "0", "1.5.2G"])
def test_parse_size_refuses_what_is_not_a_size(text):
    with pytest.raises(ValueError, match="memory size"):
        parse_size(text)


def test_format_size():
    assert format_size(512) == "512 B"
    assert format_size(3 * 2**29) == "1.5 GiB"
    assert format_size(2**40) == "1024.0 GiB"


def test_plan_whole_tiled_or_refused():
    h, w, r = 400, 300, 3
    fixed = fixed_bytes(3, h, w, r)
    assert fixed == 3 * h * w + 3 * h * w * 9 + 4 * h * w * 9
    whole = fixed + WORK_BYTES * h * w * 9
    assert plan_tile(3, h, w, r, whole) is None
    tile = plan_tile(3, h, w, r, whole - 1)
    assert tile is not None and tile % 2 == 0 and MIN_TILE <= tile < max(h, w)
    assert WORK_BYTES * (tile + 8) ** 2 * 9 <= whole - 1 - fixed  # the tile's crop fits what is left
    assert plan_tile(3, h, w, r, fixed + 10) == MIN_TILE  # little left: the smallest tile, not a refusal
    with pytest.raises(
        MemoryBudgetError,
        match=r"a 300x400 image at x3 needs about 7.6 MiB for its output alone, "
        r"over the memory budget of 7.6 MiB \(--max-memory",
    ):
        plan_tile(3, h, w, r, fixed - 1)
    assert fixed_bytes(1, h, w, r) == h * w * 10  # grey is written from the output's own memory


def test_upscale_image_tiles_by_itself_within_the_budget(monkeypatch):
    fast = FastESPCN.from_reference(random_model(3, seed=2))
    image = random_rgb(150, 200, seed=4)
    whole = upscale_image(image, fast, 3, max_memory=2**30)
    used = []
    real = up.run_tiled

    def spy(fn, x, scale, tile, **kwargs):
        used.append(tile)
        return real(fn, x, scale, tile, **kwargs)

    monkeypatch.setattr(up, "run_tiled", spy)
    budget = fixed_bytes(3, 150, 200, 3) + WORK_BYTES * 9 * 60**2
    assert torch.equal(upscale_image(image, fast, 3, max_memory=budget), whole)
    assert used == [52]  # 60 - 2 x 4 halo pixels
    used.clear()
    assert torch.equal(upscale_image(image, fast, 3, tile=120, max_memory=budget), whole)
    assert used == [52]  # a tile asked for that would pass the budget is made smaller
    used.clear()
    assert torch.equal(upscale_image(image, fast, 3, tile=20, max_memory=budget), whole)
    assert used == [20]
    used.clear()
    assert torch.equal(upscale_image(image, fast, 3, max_memory=2**30), whole)
    assert used == []  # it fits whole: not tiled
    with pytest.raises(MemoryBudgetError, match="for its output alone"):
        upscale_image(image, fast, 3, max_memory=2**20)


def test_upscale_image_takes_max_memory_as_a_number_or_a_size_and_refuses_others():
    fast = FastESPCN.from_reference(random_model(2, seed=3))
    image = random_rgb(60, 80, seed=5)
    whole = upscale_image(image, fast, 2, max_memory=2**30)
    budget = fixed_bytes(3, 60, 80, 2) + WORK_BYTES * 4 * 30**2  # small enough to be tiled
    for value in (float(budget), np.int64(budget), "1G"):
        assert torch.equal(upscale_image(image, fast, 2, max_memory=value), whole), repr(value)
    for value in (0, -5, 0.5, True, float("nan"), float("inf"), "lots", [4]):
        with pytest.raises(ValueError, match=r"max_memory must be a positive number of bytes|not a memory size"):
            upscale_image(image, fast, 2, max_memory=value)


def test_the_default_budget_stays_under_ulimit_v():
    """/proc/meminfo shows the machine's memory; a process under ``ulimit -v`` has only what the limit leaves
    (there the untiled run of a 3000 x 3000 x2 image failed out of memory instead of tiling by itself)."""
    code = (
        "import re, resource\n"
        "from espcn_fast.memory_budget import available_memory\n"
        "size = int(re.search(r'VmSize:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) * 1024\n"
        "resource.setrlimit(resource.RLIMIT_AS, (size + 2**30, resource.RLIM_INFINITY))\n"
        "print(available_memory())\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert 0 < int(run.stdout) <= 2**30


@pytest.mark.parametrize("version", [1, 2])
def test_the_default_budget_stays_under_a_memory_cgroup_limit(tmp_path, monkeypatch, version):
    """A container's or a batch job's limit, on the process's cgroup or a parent's, with the file cache it may
    reclaim counted as free: /proc/meminfo shows the whole machine, so without this a container was stopped
    (SIGKILL) for an image the budget would have tiled."""
    if version == 2:
        own, limit, usage, stat = "0::/jobs/42\n", "memory.max", "memory.current", "inactive_file"
        base = tmp_path
    else:
        own, limit, usage, stat = (
            "4:memory:/jobs/42\n3:cpu,cpuacct:/jobs/42\n",
            "memory.limit_in_bytes",
            "memory.usage_in_bytes",
            "total_inactive_file",
        )
        base = tmp_path / "memory"
    (base / "jobs" / "42").mkdir(parents=True)
    (base / "jobs" / limit).write_text("max\n" if version == 2 else "9223372036854771712\n")
    (base / "jobs" / "42" / limit).write_text(f"{2 * 2**30}\n")  # 2 GiB
    (base / "jobs" / "42" / usage).write_text(f"{2**30}\n")
    (base / "jobs" / "42" / "memory.stat").write_text(f"anon 1\n{stat} {2**29}\n")  # 0.5 GiB of it cache
    real_read = memory_budget._read
    monkeypatch.setattr(memory_budget, "_read", lambda path: own if path == "/proc/self/cgroup" else real_read(path))
    monkeypatch.setattr(memory_budget, "CGROUP_ROOT", str(tmp_path))
    monkeypatch.setattr(memory_budget, "_system_available", lambda: 64 * 2**30)
    assert memory_budget.available_memory() == 2 * 2**30 - (2**30 - 2**29)
    (base / "jobs" / limit).write_text(f"{2**30}\n")  # a parent's lower limit wins
    (base / "jobs" / usage).write_text(f"{2**30 - 2**28}\n")
    assert memory_budget.available_memory() == 2**28
    assert memory_budget.default_budget() == 2**27


def test_cli_max_memory_option(tmp_path, capsys):
    src = tmp_path / "a.png"
    Image.fromarray(random_rgb(40, 60).permute(1, 2, 0).numpy()).save(src)
    with pytest.raises(SystemExit) as exit_:
        main(["upscale", str(src), "-o", str(tmp_path / "b.png"), "--max-memory", "lots"])
    assert exit_.value.code == 2
    assert "argument --max-memory: not a memory size: 'lots' (examples: 512M" in capsys.readouterr().err
    assert main(["upscale", str(src), "-o", str(tmp_path / "b.png"), "--scale", "2", "--max-memory", "50k", "-q"]) == 1
    err = capsys.readouterr().err
    assert f"failed: {src}: a 60x40 image at x2 needs about" in err and "over the memory budget of 50.0 KiB" in err
    assert not (tmp_path / "b.png").exists()
    assert main(["upscale", str(src), "-o", str(tmp_path / "b.png"), "--scale", "2", "--max-memory", "200k", "-q"]) == 0
    assert Image.open(tmp_path / "b.png").size == (120, 80)


_SETUP = """
import sys
from espcn_fast.cli import main
from espcn_fast import FastESPCN
FastESPCN.from_pretrained(int(sys.argv[5]))  # weights and kernels loaded before the measure
"""
_RUN = """
code = main(["upscale", sys.argv[3], "-o", sys.argv[4], "--scale", sys.argv[5], "--device", "cpu",
             "--max-memory", sys.argv[6], "-q"])
print(code)
"""


def test_a_6000_x_4000_photo_stays_under_the_budget(tmp_path):
    """Untiled, this upscale peaks near 70 bytes an output pixel (6.7 GiB at x2); within a 1 GiB budget it tiles
    by itself, and the whole run, the JPEG read and the BMP write included, stays under it."""
    src, dst = tmp_path / "photo.jpg", tmp_path / "photo_x2.bmp"
    Image.fromarray(random_rgb(4000, 6000, seed=3).permute(1, 2, 0).numpy()).save(src, quality=90)
    grown, printed = peak_growth(_SETUP, _RUN, str(src), str(dst), "2", "1G")
    assert printed == "0"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # 96 MP: the test's own look at it
        assert Image.open(dst).size == (12000, 8000)
    assert grown <= 2**30, f"the run grew the process by {format_size(grown)}"


def test_a_small_file_claiming_16384_x_16384_is_refused_in_bounded_memory(tmp_path):
    """A 270 KB PNG, grey, 16384 x 16384: read (2 bytes a pixel at most), then refused before the upscale, whose
    output alone would be 2.3 GiB at x3, over a 1 GiB budget."""
    side = 16384
    raw = zlib.compress(bytes(side + 1) * side, 9)
    path = tmp_path / "bomb.png"

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", raw)
        + chunk(b"IEND", b"")
    )
    assert path.stat().st_size < 400_000
    grown, printed = peak_growth(_SETUP, _RUN, str(path), str(tmp_path / "out.png"), "3", "1G")
    assert printed == "1"
    assert grown <= 2 * side * side + 64 * 2**20, f"the run grew the process by {format_size(grown)}"
    assert not (tmp_path / "out.png").exists()
