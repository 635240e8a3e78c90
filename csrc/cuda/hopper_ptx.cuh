// The sm_90a instructions of the Hopper kernel, one wrapper each: wgmma,
// mbarriers, the TMA tensor copy and the proxy fences. Built with
// ESPCN_CUDA_EMULATION they are only declared, and tests/cpp/hopper_emulator.h
// defines them from the PTX ISA, so the kernel's own code runs on the CPU.
//
// Shared-memory matrix descriptor (PTX ISA, "Matrix Descriptor Format"), 64 bits:
//   bits  0-13  start address >> 4
//   bits 16-29  leading dimension byte offset >> 4 (LBO: next core matrix along K)
//   bits 32-45  stride dimension byte offset >> 4  (SBO: next core matrix along M or N)
//   bits 49-51  base offset (0 here: no swizzle)
//   bits 62-63  swizzle: 0 none, 1 128-byte, 2 64-byte, 3 32-byte
// A core matrix is 8 rows of 16 bytes (8 16-bit values along K).
//
// wgmma .m64nNk16 fragments, for thread l of the warpgroup (warp w = l / 32,
// g = l % 32 / 4, t = l % 4):
//   D (f32): d[4j + i] = (row 16w + g + 8 (i / 2), col 8j + 2t + i % 2)
//   A from registers: a0 = (16w + g, k 2t..2t+1), a1 = (16w + g + 8, 2t..),
//                     a2 = (16w + g, 2t+8..),     a3 = (16w + g + 8, 2t+8..)
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#if !defined(ESPCN_CUDA_EMULATION)
#include <cuda.h>  // CUtensorMap (a type only: no driver library is linked for it)
#endif

namespace espcn::cuda {

// wgmma wants the two 16-bit formats told apart.
enum class Mma16Type { kF16, kBf16 };

__host__ __device__ constexpr uint64_t matrix_descriptor(uint32_t smem_address, uint32_t lbo, uint32_t sbo) {
  return uint64_t((smem_address >> 4) & 0x3fff) | (uint64_t((lbo >> 4) & 0x3fff) << 16) |
         (uint64_t((sbo >> 4) & 0x3fff) << 32);
}

#if defined(ESPCN_CUDA_EMULATION)

using TensorMap = ::emu::TensorMap;
uint32_t smem_address(const void* p);
void mbarrier_init(uint64_t* bar, uint32_t count);
void mbarrier_init_fence();
void mbarrier_arrive(uint64_t* bar);
void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes);
void mbarrier_wait(uint64_t* bar, uint32_t parity);
void tma_load_3d(void* dst, const TensorMap* map, int x, int y, int z, uint64_t* bar);
int warp_uniform(int v);
void fence_proxy_async();
void wgmma_fence();
void wgmma_commit();
void wgmma_wait_all();
void wgmma_m64n64k16_rs_f16(float (&d)[32], const uint32_t (&a)[4], uint64_t desc_b);
template <Mma16Type T>
void wgmma_m64n32k16_ss(float (&d)[16], uint64_t desc_a, uint64_t desc_b);
template <Mma16Type T>
void wgmma_m64n16k16_ss(float (&d)[8], uint64_t desc_a, uint64_t desc_b);
template <int N>
void accumulator_fence(float (&d)[N]);

#else

using TensorMap = CUtensorMap;

__device__ __forceinline__ uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbarrier_init(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_address(bar)), "r"(count) : "memory");
}

// Makes the initialised barriers visible to the async proxy (the TMA unit).
__device__ __forceinline__ void mbarrier_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}

__device__ __forceinline__ void mbarrier_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_address(bar)) : "memory");
}

__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_address(bar)), "r"(bytes)
               : "memory");
}

// Until the phase of the given parity has completed.
__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "wait_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_%=;\n"
      "}\n" ::"r"(smem_address(bar)),
      "r"(parity)
      : "memory");
}

// A box of the tensor map at element coordinates (x, y, z) into dst, counted
// on bar's transaction bytes; coordinates outside the tensor read as zeros.
__device__ __forceinline__ void tma_load_3d(void* dst, const TensorMap* map, int x, int y, int z, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], "
      "[%5];" ::"r"(smem_address(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(x), "r"(y), "r"(z), "r"(smem_address(bar))
      : "memory");
}

// Lane 0's v for the whole warp: a value the compiler then knows to be the
// same across the warp, so that wgmma under a branch on it is not taken for
// divergent code (which serialises the wgmmas).
__device__ __forceinline__ int warp_uniform(int v) { return __shfl_sync(0xffffffffu, v, 0); }

// Orders this thread's generic shared-memory stores before later async-proxy
// reads of them (wgmma operands).
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }

// Keeps the compiler from moving accumulator reads or writes across the
// asynchronous MMAs that own the registers.
template <int N>
__device__ __forceinline__ void accumulator_fence(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

__device__ __forceinline__ void wgmma_m64n64k16_rs_f16(float (&d)[32], const uint32_t (&a)[4], uint64_t desc_b) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "{%32, %33, %34, %35}, %36, p, 1, 1, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
}

#define ESPCN_WGMMA_N32(TYPE)                                                                                    \
  asm volatile(                                                                                                  \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"                                                              \
      "wgmma.mma_async.sync.aligned.m64n32k16.f32." TYPE "." TYPE                                                \
      " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, p, 1, 1, 0, 0;\n}\n"  \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),          \
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])     \
      : "l"(desc_a), "l"(desc_b), "r"(1))

#define ESPCN_WGMMA_N16(TYPE)                                                                                   \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %10, 0;\n"                                                \
               "wgmma.mma_async.sync.aligned.m64n16k16.f32." TYPE "." TYPE                                       \
               " {%0, %1, %2, %3, %4, %5, %6, %7}, %8, %9, p, 1, 1, 0, 0;\n}\n"                                 \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])  \
               : "l"(desc_a), "l"(desc_b), "r"(1))

// Both operands from shared memory, K-major, D += A B.
template <Mma16Type T>
__device__ __forceinline__ void wgmma_m64n32k16_ss(float (&d)[16], uint64_t desc_a, uint64_t desc_b) {
  if constexpr (T == Mma16Type::kF16) {
    ESPCN_WGMMA_N32("f16");
  } else {
    ESPCN_WGMMA_N32("bf16");
  }
}

template <Mma16Type T>
__device__ __forceinline__ void wgmma_m64n16k16_ss(float (&d)[8], uint64_t desc_a, uint64_t desc_b) {
  if constexpr (T == Mma16Type::kF16) {
    ESPCN_WGMMA_N16("f16");
  } else {
    ESPCN_WGMMA_N16("bf16");
  }
}

#undef ESPCN_WGMMA_N32
#undef ESPCN_WGMMA_N16

#endif

}  // namespace espcn::cuda
