"""Checks of the CUDA sources that need no GPU: the shared tile geometry (run
on the CPU), every kernel compiled for sm_90 with ptxas' resource report (no
spills, no local memory), the tensor-core instructions each precision means
to use, and kernel files free of torch headers."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CUDA_DIR = ROOT / "csrc" / "cuda"
REPORT = ROOT / "build" / "ptxas_sm90.txt"
KERNEL_FILES = sorted(CUDA_DIR.glob("*.cu"))


def _nvcc() -> str:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed here")
    return nvcc


def test_tile_geometry_on_the_cpu(tmp_path):
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    exe = tmp_path / "tile_geometry_check"
    subprocess.run(
        [cxx, "-std=c++17", "-O1", "-Wall", "-Werror", str(ROOT / "tests/cpp/tile_geometry_check.cpp"), "-o", str(exe)],
        check=True,
    )
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_kernel_files_hold_no_torch_headers():
    for path in KERNEL_FILES + sorted(CUDA_DIR.glob("*.cuh")) + [CUDA_DIR / "kernels.h"]:
        includes = re.findall(r"#include\s+[<\"]([^>\"]+)", path.read_text())
        bad = [i for i in includes if i.split("/")[0] in ("torch", "ATen", "c10") or "checks.h" in i]
        assert not bad, f"{path.name} includes {bad}"


def _ptxas_report(nvcc: str, path: Path) -> str:
    run = subprocess.run(
        [nvcc, "-std=c++17", "-O3", "-arch=sm_90", "-Xptxas", "-v", "-c", str(path), "-o", "/dev/null"],
        capture_output=True,
        text=True,
        cwd=CUDA_DIR,
    )
    assert run.returncode == 0, f"{path.name} does not compile for sm_90:\n{run.stderr}"
    return run.stderr


def test_kernels_compile_for_sm90_without_spills():
    nvcc = _nvcc()
    lines, bad = [], []
    for path in KERNEL_FILES:
        report = _ptxas_report(nvcc, path)
        kernel = None
        for line in report.splitlines():
            if m := re.search(r"Compiling entry function '(\w+)'", line):
                kernel = m.group(1)
            elif m := re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line):
                if any(int(v) for v in m.groups()):
                    bad.append(f"{path.name}: {kernel}: {line.strip()}")
            if "ptxas info" in line or "bytes stack frame" in line:
                lines.append(f"{path.name}: {line.strip()}")
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n")
    assert lines, "ptxas printed no resource report"
    assert not bad, "spills or local memory:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    "precision, instructions",
    [
        ("fp16", ["mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32", "ldmatrix.sync.aligned.m8n8.x4.shared.b16"]),
        ("bf16", ["mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", "ldmatrix.sync.aligned.m8n8.x4.shared.b16"]),
        ("tf32", ["mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32", "cvt.rna.tf32.f32"]),
    ],
)
def test_tensor_core_kernels_use_mma(precision, instructions):
    nvcc = _nvcc()
    run = subprocess.run(
        [nvcc, "-std=c++17", "-O3", "-arch=sm_90", "-ptx", f"espcn_fused_{precision}.cu", "-o", "-"],
        capture_output=True,
        text=True,
        cwd=CUDA_DIR,
    )
    assert run.returncode == 0, run.stderr
    for instruction in instructions:
        assert instruction in run.stdout, f"{precision}: no {instruction} in the PTX"


def test_fp32_kernel_has_no_tensor_core_or_approximate_tanh():
    nvcc = _nvcc()
    run = subprocess.run(
        [nvcc, "-std=c++17", "-O3", "-arch=sm_90", "-ptx", "espcn_fused_fp32.cu", "-o", "-"],
        capture_output=True,
        text=True,
        cwd=CUDA_DIR,
    )
    assert run.returncode == 0, run.stderr
    assert "mma.sync" not in run.stdout and "tanh.approx" not in run.stdout


def test_tile_sweep_compiles():
    """benchmarks/tile_sweep.cu (run by the GPU check) instantiates the fused kernel for every candidate tile,
    and with ESPCN_WITH_HOPPER (its 9.0 build) adds the Hopper kernel's rows."""
    nvcc = _nvcc()
    run = subprocess.run(
        [
            nvcc,
            "-std=c++17",
            "-O3",
            "-arch=sm_90",
            "-DESPCN_WITH_HOPPER",
            "-c",
            "benchmarks/tile_sweep.cu",
            "-o",
            "/dev/null",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]


def _cuobjdump(nvcc: str) -> str | None:
    """The toolkit's cuobjdump, or the copy Triton's NVIDIA backend ships."""
    found = shutil.which("cuobjdump") or str(Path(nvcc).parent / "cuobjdump")
    if Path(found).exists():
        return found
    try:
        import triton
    except ImportError:
        return None
    bundled = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    return str(bundled) if bundled.exists() else None


def test_hopper_kernel_compiles_for_sm90a_with_hgmma_and_no_spills(tmp_path):
    """espcn_hopper.cu as setup.py builds it (its own sm_90a gencode): wgmma must
    reach the SASS as HGMMA (a plain sm_90 pass would reject it) without ptxas
    serialising it or fencing it again, TMA as UTMALDG, and nothing spills."""
    nvcc = _nvcc()
    obj = tmp_path / "espcn_hopper.o"
    run = subprocess.run(
        [
            nvcc,
            "-std=c++17",
            "-O3",
            "-gencode=arch=compute_90a,code=sm_90a",
            "-Xptxas",
            "-v",
            "-c",
            "espcn_hopper.cu",
            "-o",
            str(obj),
        ],
        capture_output=True,
        text=True,
        cwd=CUDA_DIR,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    reports = re.findall(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", run.stderr)
    assert len(reports) >= 2, run.stderr  # the fp16 and bf16 kernels
    assert all(v == "0" for r in reports for v in r), run.stderr
    # C7520: wgmmas serialised (e.g. issued under a branch ptxas takes for divergent);
    # C7519: a warpgroup.arrive injected because registers a wgmma owns were touched.
    stalls = [line for line in run.stderr.splitlines() if re.search(r"C75(19|20)|serializ", line)]
    assert not stalls, "\n".join(stalls[:5])
    cuobjdump = _cuobjdump(nvcc)
    if cuobjdump is None:
        pytest.skip("no cuobjdump here (nor Triton's) to read the SASS")
    sass = subprocess.run([cuobjdump, "-sass", str(obj)], capture_output=True, text=True)
    assert sass.returncode == 0, sass.stderr
    for kind, instruction in (
        ("fp16", "HGMMA.64x32x16.F32 "),
        ("bf16", "HGMMA.64x32x16.F32.BF16"),
        ("layer 1", "HGMMA.64x64x16.F32"),
        ("layer 3", "HGMMA.64x16x16.F32"),
        ("TMA", "UTMALDG.3D"),
    ):
        assert instruction in sass.stdout, f"{kind}: no {instruction.strip()} in the SASS"
