"""Build espcn_fast: the Python package and, when csrc/ has sources, its C++ extension.

Install for development with ``pip install --no-build-isolation -e .`` so that
the extension is built against the torch already installed.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent


def extensions():
    sources = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").rglob("*.cpp"))
    if not sources:
        return [], {}
    from torch.utils.cpp_extension import BuildExtension, CppExtension

    ext = CppExtension("espcn_fast._C", sources, extra_compile_args={"cxx": ["-O3"]})
    return [ext], {"build_ext": BuildExtension}


ext_modules, cmdclass = extensions()

setup(
    name="espcn_fast",
    version="0.1.0",
    description="The fastest faithful ESPCN super-resolution for PyTorch",
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["espcn_fast", "espcn_fast.*"]),
    package_data={"espcn_fast": ["pretrained/*.safetensors", "pretrained/*.json"]},
    install_requires=["torch>=2.4", "numpy", "pillow", "safetensors", "tqdm"],
    entry_points={"console_scripts": ["espcn-fast = espcn_fast.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
