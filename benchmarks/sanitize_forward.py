"""A small forward of every CUDA kernel, for compute-sanitizer (memcheck, racecheck).

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck python benchmarks/sanitize_forward.py

Small odd shapes so that tile remainders and image edges are exercised; each
precision of the fused kernel, both per-layer kernels, float32 and float16
images; and a 640x360 frame at x3 in fp16 and bf16, for the launcher's
16-bit alternate tile shape, which it takes there on 132 SMs. Exits non-zero if a launch fails; the sanitizer reports the rest.
"""

from __future__ import annotations

import sys

import torch

from espcn_fast import ESPCN, ops


def main() -> int:
    if not torch.cuda.is_available():
        print("sanitize_forward: no CUDA GPU here", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    for scale in (2, 3, 4):
        model = ESPCN(scale).cuda().eval()
        ws = [t.detach() for t in model.state_dict().values()]
        for precision in ops.PRECISIONS:
            wd = ops.WEIGHT_DTYPES[precision]
            args = [t.to(wd) if i % 2 == 0 else t for i, t in enumerate(ws)]
            for dtype in (torch.float32, torch.float16):
                x = torch.rand(2, 1, 19, 37, device="cuda", dtype=dtype)
                ops.espcn_forward(x, *args, scale, True, precision)
            if scale == 3 and wd != torch.float32:  # a 1080p frame's input: the 16-bit alternate tile on 132 SMs
                ops.espcn_forward(torch.rand(1, 1, 360, 640, device="cuda"), *args, scale, False, precision)
        h = ops.conv2d_tanh(torch.rand(1, 1, 21, 18, device="cuda"), ws[0], ws[1])
        h = ops.conv2d_tanh(h, ws[2], ws[3])
        ops.conv2d_pixel_shuffle(h, ws[4], ws[5], scale, False)
    torch.cuda.synchronize()
    print("sanitize_forward: every kernel ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
