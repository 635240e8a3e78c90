"""What the interpreter cannot show, here without a GPU: every Triton kernel compiles for sm_90 without spills, each layer on its own autotune list."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_triton_kernels_compile_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run(
        [sys.executable, "-m", "tests.triton_aot", "90"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "all kernels compiled" in run.stdout


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_each_layer_tunes_over_its_own_list():
    from espcn_fast.triton_backend import kernels

    # ESPCN's layer 1 (one channel) gathers; layers 2-3 loop over taps; fp32 takes the FFMA list.
    assert [
        kernels.config_family(p, c) for p, c in [("fp16", 1), ("bf16", 64), ("tf32", 32), ("fp32", 1), ("fp32", 64)]
    ] == ["gather", "taps", "taps", "ffma", "ffma"]
    for family, rows in kernels.CONFIGS.items():
        configs = kernels.TUNED[family].configs
        assert [
            (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"], c.num_warps, c.num_stages) for c in configs
        ] == rows
        # The one-K-step layer 1 never pays for a K block mostly padding.
        assert family != "gather" or all(c.kwargs["BLOCK_K"] == 32 for c in configs)
