// The arithmetic of espcn_forward, as named by its schema's `precision`
// string. No torch headers: the CUDA kernels include it too.
#pragma once

namespace espcn {

// fp32: float32 everywhere (FFMA on CUDA). tf32, fp16, bf16 on CUDA:
// tensor-core MMA with float32 accumulation, intermediates stored in that
// precision (tf32 in float32), hardware tanh.approx. bf16 and int8 on the
// CPU: dot-product instructions, as espcn_fast/reduced_precision.py defines
// them. int8 runs on the CPU only.
enum class Precision { kFp32, kTf32, kFp16, kBf16, kInt8 };

}  // namespace espcn
