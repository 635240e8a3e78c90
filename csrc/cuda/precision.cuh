// The fused kernel's precisions: how each stores activations in shared memory
// and multiplies them. fp32 runs FFMA on the CUDA cores; tf32, fp16 and bf16
// run warp-level mma.sync (sm_80+) with float32 accumulators.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "ptx.cuh"

namespace espcn::cuda {

// fp32: FFMA; activations float32 in shared memory, accurate tanhf.
struct Fp32 {
  using Storage = float;
  static constexpr bool kMma = false;
  __device__ static Storage store(float v) { return v; }
  __device__ static float load(Storage v) { return v; }
  __device__ static float tanh(float v) { return tanhf(v); }
};

// tf32: activations and weights rounded to tf32 once when stored, so the MMA
// reads them as they are.
struct Tf32 {
  using Storage = float;
  using Bits = uint32_t;
  static constexpr bool kMma = true;
  static constexpr int kK = 8;  // mma.m16n8k8
  __device__ static Storage store(float v) { return round_tf32(v); }
  __device__ static float load(Storage v) { return v; }
  __device__ static float tanh(float v) { return tanh_approx(v); }
  __device__ static void mma(float (&c)[4], const uint32_t (&a)[4], uint2 b) { mma_m16n8k8_tf32(c, a, b); }
};

// fp16 and bf16: the same m16n8k16 MMA on two 16-bit formats.
template <class T>
struct Mma16 {
  using Storage = T;
  using Bits = uint16_t;
  static constexpr bool kMma = true;
  static constexpr int kK = 16;  // mma.m16n8k16
  static constexpr bool kHalf = std::is_same_v<T, __half>;
  __device__ static Storage store(float v) {
    if constexpr (kHalf) {
      return __float2half_rn(v);
    } else {
      return __float2bfloat16_rn(v);
    }
  }
  __device__ static float load(Storage v) {
    if constexpr (kHalf) {
      return __half2float(v);
    } else {
      return __bfloat162float(v);
    }
  }
  __device__ static float tanh(float v) { return tanh_approx(v); }
  __device__ static void mma(float (&c)[4], const uint32_t (&a)[4], uint2 b) {
    if constexpr (kHalf) {
      mma_m16n8k16_f16(c, a, b);
    } else {
      mma_m16n8k16_bf16(c, a, b);
    }
  }
};
using Fp16 = Mma16<__half>;
using Bf16 = Mma16<__nv_bfloat16>;

// Layer 1 of bf16 multiplies in fp16: the 8-bit image does not survive
// bf16's 8-bit mantissa (a PyTorch model of the rounding loses 0.012 dB of Set5
// PSNR at x3 that way, 0.003 dB with the image in fp16). bf16 weights are
// exact in fp16 over the range ESPCN's weights take; pixels or weights past
// fp16's range (an image in 0..65535) saturate at +-65504 instead of becoming
// inf, which bf16 itself would not (inf - inf made every output NaN). NaN
// stays NaN. The other precisions keep their own.
struct Fp16Saturating : Fp16 {
  __device__ static Storage store(float v) { return Fp16::store(fabsf(v) > 65504.f ? copysignf(65504.f, v) : v); }
};
template <class P>
using Layer1Precision = std::conditional_t<std::is_same_v<P, Bf16>, Fp16Saturating, P>;

// Raw bits of a stored value (to build MMA registers without conversions).
template <class P>
__device__ __forceinline__ uint32_t bits_of(typename P::Storage v) {
  if constexpr (sizeof(typename P::Storage) == 2) {
    return *reinterpret_cast<const uint16_t*>(&v);
  } else {
    return __float_as_uint(v);
  }
}

// Stores two adjacent channels (n, n+1) of one pixel; n is even.
template <class P>
__device__ __forceinline__ void store_pair(typename P::Storage* dst, float v0, float v1) {
  if constexpr (sizeof(typename P::Storage) == 2) {
    const uint32_t packed = bits_of<P>(P::store(v0)) | (bits_of<P>(P::store(v1)) << 16);
    *reinterpret_cast<uint32_t*>(dst) = packed;
  } else {
    *reinterpret_cast<float2*>(dst) = make_float2(P::store(v0), P::store(v1));
  }
}

// The value of a weight element (given in the precision's dtype) as float.
template <class P>
__device__ __forceinline__ float weight_value(const void* w, int i) {
  if constexpr (sizeof(typename P::Storage) == 2) {
    return P::load(static_cast<const typename P::Storage*>(w)[i]);
  } else {
    return static_cast<const float*>(w)[i];
  }
}

}  // namespace espcn::cuda
