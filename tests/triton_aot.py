"""Compile every Triton kernel ahead of time for real GPUs, without one (run by tests/test_triton_compile.py).

    python -m tests.triton_aot [ARCH...]        # default: 90 (Hopper; 80 for Ampere)

The interpreter accepts things a GPU compile rejects (dot shapes under 16,
some casts); this compiles the conv kernel for each layer shape of ESPCN, each
precision, every autotune configuration that layer can pick and the fixed one, to
PTX and cubin for the given compute capabilities, and the tanh kernel; and fails
a configuration that ptxas had to spill to local memory (a slow choice on offer
to the autotuner). Prints one line per failure; exits 1 on any.
Must run without TRITON_INTERPRET (a fresh process).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

os.environ.pop("TRITON_INTERPRET", None)

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from espcn_fast.triton_backend import kernels  # noqa: E402

DTYPES = {
    "fp32": ("*fp32", "*fp32"),
    "tf32": ("*fp32", "*fp32"),
    "fp16": ("*fp16", "*fp16"),
    "bf16": ("*bf16", "*bf16"),
}
# (k, shuffle, input pointer dtype is the image's for layer 1, the stored activations' otherwise)
LAYERS = {"layer1": (5, False), "layer2": (3, False), "layer3": (3, True)}
SHAPES = {"layer1": (64, 1, 5), "layer2": (32, 64, 3), "layer3": (9, 32, 3)}  # (out, in channels, k) at x3


def layer_args(layer: str) -> dict[str, int]:
    """The integer arguments espcn_forward passes for one layer of a 1080p x3 frame (channels-last activations)."""
    c_out, c_in, k = SHAPES[layer]
    h, w, rr = 360, 640, 9
    hw = h * w
    x = (hw, hw, w, 1) if c_in == 1 else (hw * c_in, 1, w * c_in, c_in)  # n, c, h, w
    wt = (k * k * c_in, 1, k * c_in, c_in)  # out, in, ky, kx
    out = (hw * rr, hw * rr, w * 3, 1) if layer == "layer3" else (hw * c_out, 1, w * c_out, c_out)
    return dict(
        zip(
            [
                "N",
                "H",
                "W",
                "C_IN",
                "C_OUT",
                "SCALE",
                "SX_N",
                "SX_C",
                "SX_H",
                "SX_W",
                "SW_N",
                "SW_C",
                "SW_H",
                "SW_W",
                "SO_N",
                "SO_C",
                "SO_H",
                "SO_W",
            ],
            [1, h, w, c_in, c_out, 3, *x, *wt, *out],
        )
    )


def compile_conv(arch: int, precision: str, layer: str, config: triton.Config):
    """One layer compiled, specialised as a launch would be: ints equal to 1 become
    constants, pointers and ints divisible by 16 are marked so (what lets Triton
    prove 16-byte loads)."""
    k, shuffle = LAYERS[layer]
    w_type, act_type = DTYPES[precision]
    x_type = "*fp32" if layer == "layer1" else act_type
    out_type = "*fp32" if shuffle else act_type
    ints = layer_args(layer)
    constexprs = {
        "KSIZE": k,
        "SHUFFLE": shuffle,
        "CLAMP": shuffle,
        "DOT": kernels.DOT_MODES[precision],
        "EMULATE_BF16": False,
        "TAP_MAJOR": kernels.tap_major(SHAPES[layer][1]),
        "FAST_TANH": precision != "fp32",
        **config.kwargs,
    }
    constexprs |= {name: 1 for name, v in ints.items() if v == 1}
    signature = {"x_ptr": x_type, "w_ptr": w_type, "b_ptr": "*fp32", "out_ptr": out_type}
    signature |= {name: "constexpr" if v == 1 else "i32" for name, v in ints.items()}
    signature |= {name: "constexpr" for name in constexprs}
    names = kernels.conv_kernel.arg_names
    aligned = [
        n for n in signature if signature[n].startswith("*") or (n in ints and ints[n] != 1 and ints[n] % 16 == 0)
    ]
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    return triton.compile(
        ASTSource(fn=kernels.conv_kernel, signature=signature, constexprs=constexprs, attrs=attrs),
        target=GPUTarget("cuda", arch, 32),
        options={"num_warps": config.num_warps, "num_stages": config.num_stages},
    )


def spilled_bytes(cubin: bytes) -> int:
    """Stack + local memory a thread of the kernel uses (cuobjdump's resource usage; 0 without spills)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        usage = subprocess.run(
            [triton.knobs.nvidia.cuobjdump.path, "-res-usage", path], capture_output=True, text=True, check=True
        ).stdout
    found = re.search(r"STACK:(\d+) SHARED:\d+ LOCAL:(\d+)", usage)
    if found is None:
        raise RuntimeError(f"no resource usage in cuobjdump's output: {usage[:200]}")
    return int(found[1]) + int(found[2])


def main(argv: list[str]) -> int:
    archs = [int(a) for a in argv] or [90]
    failures = 0
    for arch in archs:
        for precision in DTYPES:
            for layer in LAYERS:
                fixed = triton.Config(kernels.fixed_blocks(*SHAPES[layer], precision), num_warps=4, num_stages=3)
                family = kernels.config_family(precision, SHAPES[layer][1])
                for config in kernels.gpu_configs(family) + [fixed]:
                    try:
                        compiled = compile_conv(arch, precision, layer, config)
                        ptx = compiled.asm["ptx"]
                        if spilled := spilled_bytes(compiled.asm["cubin"]):
                            raise RuntimeError(f"ptxas spilled {spilled} bytes a thread")
                        if precision != "fp32" and "mma" not in ptx:
                            raise RuntimeError("no tensor-core mma in the PTX")
                        if not LAYERS[layer][1] and ("tanh.approx.f32" in ptx) != (precision != "fp32"):
                            raise RuntimeError("tanh.approx.f32 where it should not be, or missing where it should")
                    except Exception as exc:  # noqa: BLE001  (each failure reported)
                        failures += 1
                        print(f"FAIL sm_{arch} {precision} {layer} {config}: {type(exc).__name__}: {str(exc)[:300]}")
        try:
            triton.compile(
                ASTSource(
                    fn=kernels.tanh_kernel,
                    signature={"x_ptr": "*fp32", "out_ptr": "*fp32", "n": "i32", "BLOCK": "constexpr"},
                    constexprs={"BLOCK": 1024},
                ),
                target=GPUTarget("cuda", arch, 32),
            )
        except Exception as exc:  # noqa: BLE001
            failures += 1
            print(f"FAIL sm_{arch} tanh_kernel: {type(exc).__name__}: {str(exc)[:300]}")
    print(
        f"triton {triton.__version__}: {'all kernels compiled' if not failures else f'{failures} failure(s)'} "
        f"for sm_{', sm_'.join(map(str, archs))}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
