// The PTX instructions the fused kernel uses, one wrapper each. Built with
// ESPCN_CUDA_EMULATION (tests/cpp/cuda_emulator.h), they are only declared
// here and the CPU emulator defines them, so the kernels' index and fragment
// logic can run on a machine without a GPU.
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

#include <cuda_runtime.h>

#include <cstdint>

namespace espcn::cuda {

#if defined(ESPCN_CUDA_EMULATION)

#define ESPCN_DYNAMIC_SHARED_MEMORY(name) unsigned char* name = ::emu::dynamic_shared_memory()
float tanh_approx(float x);
float round_tf32(float x);
void ldmatrix_x4(uint32_t (&r)[4], const void* p);
void mma_m16n8k16_f16(float (&c)[4], const uint32_t (&a)[4], uint2 b);
void mma_m16n8k16_bf16(float (&c)[4], const uint32_t (&a)[4], uint2 b);
void mma_m16n8k8_tf32(float (&c)[4], const uint32_t (&a)[4], uint2 b);
void named_barrier(int id, int count);
float clamp_unit(float x);

#else

// Hardware barrier `id` (1-15; 0 is __syncthreads's) for `count` threads,
// whole warps: a group of the block's warps waits for each other alone.
__device__ __forceinline__ void named_barrier(int id, int count) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(count) : "memory");
}

// The block's dynamic shared memory (its size is given at launch).
#define ESPCN_DYNAMIC_SHARED_MEMORY(name) extern __shared__ __align__(16) unsigned char name[]

// Clamp to [0, 1] keeping NaN, as torch.clamp and the CPU kernels do (the
// .NaN forms return NaN if an operand is; fminf/fmaxf would return a bound).
__device__ __forceinline__ float clamp_unit(float x) {
  float y;
  asm("max.NaN.f32 %0, %1, 0f00000000;\n\tmin.NaN.f32 %0, %0, 0f3F800000;" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ float tanh_approx(float x) {
  float y;
  asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Round to tf32 (10-bit mantissa), nearest with ties away, as the MMA expects.
__device__ __forceinline__ float round_tf32(float x) {
  uint32_t y;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(y) : "f"(x));
  return __uint_as_float(y);
}

// Four 8x8 16-bit matrices; lanes 8i..8i+7 give the row addresses of matrix i.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  const uint32_t address = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

__device__ __forceinline__ void mma_m16n8k16_f16(float (&c)[4], const uint32_t (&a)[4], uint2 b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b.x), "r"(b.y));
}

__device__ __forceinline__ void mma_m16n8k16_bf16(float (&c)[4], const uint32_t (&a)[4], uint2 b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b.x), "r"(b.y));
}

__device__ __forceinline__ void mma_m16n8k8_tf32(float (&c)[4], const uint32_t (&a)[4], uint2 b) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b.x), "r"(b.y));
}

#endif

}  // namespace espcn::cuda
