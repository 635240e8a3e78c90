"""Build espcn_fast: the Python package and its C++/CUDA extension ``espcn_fast._C``.

Install for development with ``pip install --no-build-isolation -e .`` so that
the extension is built against the torch already installed.

- The CPU kernels (csrc/*.cpp, csrc/cpu/*.cpp) are built on every machine.
- The CUDA kernels (csrc/cuda/) are added when torch has CUDA and nvcc is
  found; ``FORCE_CUDA=1`` forces them (an error if nvcc is missing),
  ``FORCE_CUDA=0`` leaves them out. ``ESPCN_FAST_CUDA_ARCH`` chooses the
  architectures (default ``8.0;8.6;8.9;9.0+PTX``). Where 9.0 is among them,
  ``csrc/cuda/espcn_hopper.cu`` is compiled apart, for sm_90a alone (wgmma
  and TMA exist only there, and a plain sm_90 pass rejects wgmma), and
  linked in; the fused op launches it on compute capability 9.0.
- ``ESPCN_FAST_NO_EXTENSION=1`` installs the pure-Python package only.
- ``DEBUG=1`` builds without optimisation and with debug symbols (``-O0 -g``;
  ``-G`` for device code).
"""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
DEFAULT_CUDA_ARCH = "8.0;8.6;8.9;9.0+PTX"
HOPPER_SOURCE = "csrc/cuda/espcn_hopper.cu"


# DEBUG=1: no optimisation and debug symbols (host code -O0 -g; device code -G, which also turns
# off device optimisation: slow kernels, for cuda-gdb and compute-sanitizer's line numbers).
_DEBUG = os.environ.get("DEBUG") == "1"
_OPTIMISE = ["-O0", "-g"] if _DEBUG else ["-O3"]
_NVCC_OPTIMISE = ["-O0", "-g", "-G"] if _DEBUG else ["-O3", "-lineinfo"]


def _sources(folder: str, *patterns: str) -> list[str]:
    found = []
    for pattern in patterns:
        found += sorted(str(p.relative_to(ROOT)) for p in (ROOT / folder).glob(pattern))
    return found


def _cuda_wanted() -> bool:
    force = os.environ.get("FORCE_CUDA")
    if force == "0" or not _sources("csrc/cuda", "*.cu"):
        return False
    import torch
    from torch.utils.cpp_extension import CUDA_HOME

    if force == "1":
        if CUDA_HOME is None:
            sys.exit("FORCE_CUDA=1 but nvcc was not found (set CUDA_HOME)")
        return True
    return torch.version.cuda is not None and CUDA_HOME is not None


def _cuda_dirs() -> tuple[list[str], list[str]]:
    """Headers and libraries beyond what torch adds.

    The nvidia-* wheels that come with torch hold cusparse.h & co. that a
    bare toolkit may lack; and torch looks for libcudart only in
    CUDA_HOME/lib64, where some toolkits keep it in lib (or in
    /usr/local/cuda* when nvcc is linked into /usr/local/bin).
    """
    from torch.utils.cpp_extension import CUDA_HOME

    site = Path(sysconfig.get_paths()["purelib"]) / "nvidia"
    includes, libs = [], []
    homes = [Path(CUDA_HOME)] if CUDA_HOME else []
    homes += sorted(Path("/usr/local").glob("cuda*"))
    # The toolkit's own headers first: the wheels' copies lack crt/.
    for home in homes:
        if (home / "include" / "crt" / "host_defines.h").exists():
            includes.append(str(home / "include"))
            break
    for sub in ("cu13", "cu12"):
        if (site / sub / "include").is_dir():
            includes.append(str(site / sub / "include"))
    for home in homes:
        for sub in ("lib64", "lib"):
            if (home / sub / "libcudart.so").exists():
                return includes, [str(home / sub)]
    for sub in ("cu13", "cu12"):
        if (site / sub / "lib").is_dir():
            libs.append(str(site / sub / "lib"))
    return includes, libs


def _hopper_wanted(arch_list: str) -> bool:
    archs = arch_list.replace(";", " ").replace(",", " ").split()
    return any(a.split("+")[0] in ("9.0", "9.0a") for a in archs)


def _hopper_inputs() -> list[Path]:
    return [
        ROOT / HOPPER_SOURCE,
        *(ROOT / "csrc" / "cuda").glob("*.cuh"),
        *(ROOT / "csrc" / "cuda").glob("*.h"),
        *(ROOT / "csrc").glob("*.h"),
    ]


def _build_class():
    """BuildExtension that first compiles the Hopper kernel with its own gencode
    (torch compiles every .cu with one set of flags) and links the object in."""
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension

    class Build(BuildExtension):
        def build_extensions(self):
            for ext in self.extensions:
                includes = getattr(ext, "hopper_includes", None)
                if includes is None:
                    continue
                obj = Path(self.build_temp).resolve() / "espcn_hopper_sm90a.o"
                newest = max(p.stat().st_mtime for p in _hopper_inputs())
                if not obj.exists() or obj.stat().st_mtime < newest:
                    obj.parent.mkdir(parents=True, exist_ok=True)
                    cmd = [
                        str(Path(CUDA_HOME) / "bin" / "nvcc"),
                        "-std=c++17",
                        *_NVCC_OPTIMISE,
                        "-Xptxas=-v",
                        "-gencode=arch=compute_90a,code=sm_90a",
                        "-Xcompiler",
                        "-fPIC",
                        *(f"-I{i}" for i in includes),
                        "-c",
                        str(ROOT / HOPPER_SOURCE),
                        "-o",
                        str(obj),
                    ]
                    print(" ".join(cmd), flush=True)
                    subprocess.run(cmd, check=True)
                ext.extra_objects.append(str(obj))
            super().build_extensions()

    return Build.with_options(no_python_abi_suffix=False)


def extensions():
    if os.environ.get("ESPCN_FAST_NO_EXTENSION") == "1":
        return [], {}
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    sources = _sources("csrc", "*.cpp") + _sources("csrc/cpu", "*.cpp")
    cxx = [*_OPTIMISE, "-fopenmp", "-Wall", "-Wno-unknown-pragmas"]
    if _cuda_wanted():
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", os.environ.get("ESPCN_FAST_CUDA_ARCH", DEFAULT_CUDA_ARCH))
        includes, libs = _cuda_dirs()
        hopper = _hopper_wanted(os.environ["TORCH_CUDA_ARCH_LIST"])
        cuda_sources = [s for s in _sources("csrc/cuda", "*.cpp", "*.cu") if s != HOPPER_SOURCE]
        ext = CUDAExtension(
            "espcn_fast._C",
            sources + cuda_sources,
            include_dirs=includes,
            library_dirs=libs,
            define_macros=[("ESPCN_WITH_CUDA", "1")] + ([("ESPCN_WITH_HOPPER", "1")] if hopper else []),
            extra_compile_args={"cxx": cxx, "nvcc": [*_NVCC_OPTIMISE, "-Xptxas=-v"]},
            extra_link_args=["-fopenmp"],
        )
        if hopper:
            ext.hopper_includes = includes
        return [ext], {"build_ext": _build_class()}
    ext = CppExtension("espcn_fast._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"])
    return [ext], {"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)}


ext_modules, cmdclass = extensions()

# The package's metadata, version included, is in pyproject.toml; this file builds the extension.
setup(ext_modules=ext_modules, cmdclass=cmdclass)
