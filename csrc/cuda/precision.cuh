// The fused kernel's precisions: how each stores activations in shared memory
// and multiplies them. fp32 runs FFMA on the CUDA cores; tf32, fp16 and bf16
// run warp-level mma.sync (sm_80+) with float32 accumulators.
//
// mma.sync fragment layouts (PTX ISA, "Matrix fragments for mma.m16n8k16 /
// m16n8k8"), with g = lane / 4 and t = lane % 4:
//   C (16x8 f32):       c0, c1 = (row g, cols 2t, 2t+1); c2, c3 = (row g+8, same cols)
//   A m16n8k16 16-bit:  a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B m16n8k16 16-bit:  b0 = (k 2t..2t+1, n g), b1 = (k 2t+8..2t+9, n g)
//   A m16n8k8 tf32:     a0 = (g, t), a1 = (g+8, t), a2 = (g, t+4), a3 = (g+8, t+4)
//   B m16n8k8 tf32:     b0 = (k t, n g), b1 = (k t+4, n g)
// A 32-bit register of two 16-bit values holds the lower k in its low half.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace espcn::cuda {

__device__ __forceinline__ float tanh_approx(float x) {
  float y;
  asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ float round_tf32(float x) {
  uint32_t y;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(y) : "f"(x));
  return __uint_as_float(y);
}

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Four 8x8 16-bit matrices; lanes 8i..8i+7 give the row addresses of matrix i.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(p)));
}

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
  __device__ static void mma(float (&c)[4], const uint32_t (&a)[4], uint2 b) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b.x), "r"(b.y));
  }
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
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
          "{%0, %1, %2, %3};\n"
          : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b.x), "r"(b.y));
    } else {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
          "{%0, %1, %2, %3};\n"
          : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b.x), "r"(b.y));
    }
  }
};
using Fp16 = Mma16<__half>;
using Bf16 = Mma16<__nv_bfloat16>;

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
