"""What every kernel test needs: random models (never zeros), their float64
reference, op outputs poisoned with NaN before the kernel writes them, and how
close each precision must come to that reference."""

from __future__ import annotations

import os
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


@contextmanager
def threads(n: int):
    """torch's intra-op threads set to ``n`` (the CPU kernels' strips run on them)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextmanager
def forced_cpu_isa(name: str):
    """``ESPCN_FAST_CPU_ISA=name``: the CPU kernels read it at each call."""
    old = os.environ.get("ESPCN_FAST_CPU_ISA")
    os.environ["ESPCN_FAST_CPU_ISA"] = name
    try:
        yield
    finally:
        if old is None:
            del os.environ["ESPCN_FAST_CPU_ISA"]
        else:
            os.environ["ESPCN_FAST_CPU_ISA"] = old


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


# ||out - ref|| / ||ref|| bounds against the float64 reference, per precision.
REL_TOL = {"fp32": 1e-6, "tf32": 2e-3, "fp16": 4e-3, "bf16": 3e-2}


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64; fails first if the kernel left an element non-finite (unwritten)."""
    out, ref = out.double().cpu(), ref.double().cpu()
    assert torch.isfinite(out).all(), f"{int((~torch.isfinite(out)).sum())} outputs unwritten (NaN) or non-finite"
    return float((out - ref).norm() / ref.norm())


def assert_matches_reference(out: torch.Tensor, ref: torch.Tensor, precision: str) -> None:
    """A kernel's output against the float64 reference: same shape, every element written, the
    relative error within ``REL_TOL``; fp32 elementwise too, to float32 rounding of the output's
    scale (4e-6 x max|ref|: eager float32 lands at 7e-7 on random models, the CUDA kernel at up
    to 1e-6 on an H200)."""
    assert out.shape == ref.shape, f"shape {tuple(out.shape)}, expected {tuple(ref.shape)}"
    err = relative_error(out, ref)
    assert err <= REL_TOL[precision], f"{precision}: relative error {err:.2e} > {REL_TOL[precision]:.0e}"
    if precision == "fp32":
        ref = ref.double().cpu()
        torch.testing.assert_close(out.double().cpu(), ref, atol=4e-6 * float(ref.abs().max()), rtol=0)
