// Checks of the sm_90a emulator itself (hopper_emulator.h) against plain
// loops, so that an emulator error cannot hide a kernel error: wgmma with
// both operands in shared memory in every swizzle mode (and a descriptor
// stepped along K inside a swizzle atom), with A from registers, fp16 and
// bf16; when the operands are read and the accumulators written; mbarrier
// phases, parities and transaction bytes; tensor copies with out-of-bounds
// zeros. Matrices are laid out here with CuTe's formulation (an atom's row-major
// offset, then Swizzle<B, 4, 3>), not the emulator's. Prints each failure
// and exits non-zero on any (tests/test_hopper_emulation.py runs it).
#define ESPCN_CUDA_EMULATION 1
#include "cuda_emulator.h"
#include "hopper_emulator.h"
// (the emulator first)

#include <cstdio>
#include <random>
#include <vector>

using namespace espcn::cuda;

static int failures = 0;
#define EXPECT(cond, ...)                \
  do {                                   \
    if (!(cond)) {                       \
      if (++failures <= 20) {            \
        std::printf("FAIL %s: ", #cond); \
        std::printf(__VA_ARGS__);        \
        std::printf("\n");               \
      }                                  \
    }                                    \
  } while (0)

static uint16_t bits16(float v, bool bf16) {
  uint16_t b;
  if (bf16) {
    const __nv_bfloat16 h = __float2bfloat16_rn(v);
    std::memcpy(&b, &h, 2);
  } else {
    const __half h = __float2half_rn(v);
    std::memcpy(&b, &h, 2);
  }
  return b;
}

// Byte offset of element (row, k) of a K-major 16-bit matrix: swizzle 0
// (none: 8 x 16-byte core matrices, sbo between row groups, lbo between
// 8-element k groups) or a W-byte swizzle (W = 32, 64, 128: atoms of 8 rows
// x W bytes, sbo apart; Swizzle<B, 4, 3> with 2^B = W / 16 on the offset
// within a 1024-byte aligned region).
static uint32_t layout_offset(int swizzle_bytes, int row, int k, uint32_t sbo, uint32_t lbo) {
  if (swizzle_bytes == 0) return (row / 8) * sbo + (k / 8) * lbo + (row % 8) * 16 + (k % 8) * 2;
  const uint32_t atom = (row % 8) * swizzle_bytes + (k * 2) % swizzle_bytes + (k * 2) / swizzle_bytes * lbo;
  const uint32_t offset = (row / 8) * sbo + atom;
  const uint32_t b = swizzle_bytes == 128 ? 3 : swizzle_bytes == 64 ? 2 : 1;
  const uint32_t yyy = (offset >> 7) & ((1u << b) - 1);  // Swizzle<B, 4, 3>: bits [7, 7+B) into [4, 4+B)
  return offset ^ (yyy << 4);
}

static uint64_t descriptor(uint32_t start, uint32_t lbo, uint32_t sbo, int swizzle_bytes) {
  const uint64_t mode = swizzle_bytes == 0 ? 0 : swizzle_bytes == 128 ? 1 : swizzle_bytes == 64 ? 2 : 3;
  return matrix_descriptor(start, lbo, sbo) | (mode << 62);
}

// D = C + A B for A 64 x K, B (N x K, K-major), K a multiple of 16, both in
// shared memory; C given; every element small integers / 8 so the sums are exact.
template <int N>
static void check_ss(int swizzle_bytes, bool bf16, int K) {
  std::mt19937 rng(swizzle_bytes * 7 + N + K + bf16);
  std::uniform_int_distribution<int> small(-8, 8);
  std::vector<float> A(64 * K), B(N * K), C(64 * N), D(64 * N, 0.f);
  for (float& v : A) v = small(rng) / 8.f;
  for (float& v : B) v = small(rng) / 8.f;
  for (float& v : C) v = small(rng);
  // Operands at 1024-byte aligned offsets; swizzled atoms are rows of W bytes:
  // K beyond W takes further atoms lbo apart.
  const int w = swizzle_bytes == 0 ? 16 : swizzle_bytes;
  const uint32_t sbo = swizzle_bytes == 0 ? 128 : 8 * w;
  const uint32_t lbo_a = swizzle_bytes == 0 ? 64 / 8 * 128 : 64 / 8 * sbo, lbo_b = swizzle_bytes == 0 ? N / 8 * 128 : N / 8 * sbo;
  const uint32_t a_at = 1024, b_at = a_at + (K * 2 + w - 1) / w * lbo_a + 1024;
  const size_t bytes = b_at + (K * 2 + w - 1) / w * lbo_b + 2048;
  emu::launch(dim3(1, 1, 1), 128, bytes, [&] {
    unsigned char* smem = emu::dynamic_shared_memory();
    const int tid = int(threadIdx.x);
    if (tid == 0) {
      for (int r = 0; r < 64; ++r)
        for (int k = 0; k < K; ++k) {
          const uint16_t v = bits16(A[r * K + k], bf16);
          std::memcpy(smem + a_at + layout_offset(swizzle_bytes, r, k, sbo, lbo_a), &v, 2);
        }
      for (int n = 0; n < N; ++n)
        for (int k = 0; k < K; ++k) {
          const uint16_t v = bits16(B[n * K + k], bf16);
          std::memcpy(smem + b_at + layout_offset(swizzle_bytes, n, k, sbo, lbo_b), &v, 2);
        }
    }
    __syncthreads();
    float d[N / 2];
    const int warp = tid / 32, g = tid % 32 / 4, t = tid % 4;
    for (int q = 0; q < N / 2; ++q) d[q] = C[(16 * warp + g + 8 * (q % 4 / 2)) * N + 8 * (q / 4) + 2 * t + q % 2];
    wgmma_fence();
    for (int k0 = 0; k0 < K; k0 += 16) {
      // Along K: the next core matrices (no swizzle), or 32 bytes further inside the atom.
      const uint32_t step = swizzle_bytes == 0 ? (k0 / 8) * lbo_a : (k0 * 2 / w) * lbo_a + (k0 * 2) % w;
      const uint32_t step_b = swizzle_bytes == 0 ? (k0 / 8) * lbo_b : (k0 * 2 / w) * lbo_b + (k0 * 2) % w;
      const uint64_t da = descriptor(a_at + step, lbo_a, sbo, swizzle_bytes);
      const uint64_t db = descriptor(b_at + step_b, lbo_b, sbo, swizzle_bytes);
      if constexpr (N == 32) {
        if (bf16) wgmma_m64n32k16_ss<Mma16Type::kBf16>(d, da, db); else wgmma_m64n32k16_ss<Mma16Type::kF16>(d, da, db);
      } else {
        if (bf16) wgmma_m64n16k16_ss<Mma16Type::kBf16>(d, da, db); else wgmma_m64n16k16_ss<Mma16Type::kF16>(d, da, db);
      }
    }
    wgmma_commit();
    wgmma_wait_all();
    for (int q = 0; q < N / 2; ++q) D[(16 * warp + g + 8 * (q % 4 / 2)) * N + 8 * (q / 4) + 2 * t + q % 2] = d[q];
  });
  int bad = 0;
  for (int m = 0; m < 64; ++m)
    for (int n = 0; n < N; ++n) {
      double s = C[m * N + n];
      for (int k = 0; k < K; ++k) s += double(A[m * K + k]) * B[n * K + k];
      if (float(s) != D[m * N + n] && ++bad <= 3)
        EXPECT(false, "ss N=%d swizzle %d %s K=%d: D[%d][%d] = %g, expected %g", N, swizzle_bytes, bf16 ? "bf16" : "f16",
               K, m, n, D[m * N + n], s);
    }
}

// A from registers (m16n8k16's A fragment per warp), B in shared memory unswizzled, N = 64.
static void check_rs() {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> small(-8, 8);
  std::vector<float> A(64 * 16), B(64 * 16), D(64 * 64);
  for (float& v : A) v = small(rng) / 4.f;
  for (float& v : B) v = small(rng) / 4.f;
  emu::launch(dim3(1, 1, 1), 128, 4096, [&] {
    unsigned char* smem = emu::dynamic_shared_memory();
    const int tid = int(threadIdx.x);
    if (tid == 0)
      for (int n = 0; n < 64; ++n)
        for (int k = 0; k < 16; ++k) {
          const uint16_t v = bits16(B[n * 16 + k], false);
          std::memcpy(smem + layout_offset(0, n, k, 128, 1024), &v, 2);
        }
    __syncthreads();
    const int warp = tid / 32, g = tid % 32 / 4, t = tid % 4;
    auto pack = [&](int row, int k) {
      return uint32_t(bits16(A[row * 16 + k], false)) | (uint32_t(bits16(A[row * 16 + k + 1], false)) << 16);
    };
    const int r0 = 16 * warp + g;
    const uint32_t a[4] = {pack(r0, 2 * t), pack(r0 + 8, 2 * t), pack(r0, 2 * t + 8), pack(r0 + 8, 2 * t + 8)};
    float d[32] = {};
    wgmma_fence();
    wgmma_m64n64k16_rs_f16(d, a, descriptor(0, 1024, 128, 0));
    wgmma_commit();
    wgmma_wait_all();
    for (int q = 0; q < 32; ++q) D[(r0 + 8 * (q % 4 / 2)) * 64 + 8 * (q / 4) + 2 * t + q % 2] = d[q];
  });
  for (int m = 0; m < 64; ++m)
    for (int n = 0; n < 64; ++n) {
      double s = 0;
      for (int k = 0; k < 16; ++k) s += double(A[m * 16 + k]) * B[n * 16 + k];
      EXPECT(float(s) == D[m * 64 + n], "rs: D[%d][%d] = %g, expected %g", m, n, D[m * 64 + n], s);
    }
}

// The operands are read, and the accumulators written, at the wait.
static void check_async_order() {
  std::vector<float> before(128), after(128);
  emu::launch(dim3(1, 1, 1), 128, 4096, [&] {
    unsigned char* smem = emu::dynamic_shared_memory();
    const int tid = int(threadIdx.x);
    const uint16_t one = bits16(1.f, false), two = bits16(2.f, false);
    if (tid == 0) {
      for (int i = 0; i < 1024; ++i) std::memcpy(smem + 2 * i, &one, 2);  // A 64 x 16 of ones
      for (int i = 0; i < 128; ++i) std::memcpy(smem + 2048 + 2 * i, &one, 2);  // B 8... 16 x 16 of ones
      for (int i = 128; i < 256; ++i) std::memcpy(smem + 2048 + 2 * i, &one, 2);
    }
    __syncthreads();
    float d[8] = {};
    wgmma_fence();
    wgmma_m64n16k16_ss<Mma16Type::kF16>(d, descriptor(0, 1024, 128, 0), descriptor(2048, 256, 128, 0));
    wgmma_commit();
    before[tid] = d[0];
    __syncthreads();
    if (tid == 0) std::memcpy(smem, &two, 2);  // A[0][0] = 2 once the wgmma has started, before its wait
    __syncthreads();
    wgmma_wait_all();
    after[tid] = d[0];
  });
  EXPECT(before[0] == 0.f && before[77] == 0.f, "accumulators changed before the wait: %g", before[0]);
  EXPECT(after[0] == 17.f, "row 0 (A[0][0] = 2 at the wait) = %g, expected 17", after[0]);
  EXPECT(after[77] == 16.f, "another row = %g, expected 16", after[77]);
}

// Phases and parities; a tensor copy: poisoned until the wait, zeros outside.
static void check_mbarrier_and_copy() {
  const int W = 12, H = 5, Z = 2;
  std::vector<float> image(Z * H * W);
  for (size_t i = 0; i < image.size(); ++i) image[i] = float(i);
  emu::TensorMap map;
  EXPECT(emu::encode_tiled(&map, image.data(), 4, {uint64_t(W), uint64_t(H), uint64_t(Z)},
                           {uint64_t(W) * 4, uint64_t(W) * H * 4}, {8, 4, 1}),
         "a valid map refused");
  emu::TensorMap bad;
  EXPECT(!emu::encode_tiled(&bad, image.data(), 4, {9, 5, 1}, {36, 180}, {8, 4, 1}), "a 36-byte pitch accepted");
  EXPECT(!emu::encode_tiled(&bad, image.data(), 4, {12, 5, 1}, {48, 240}, {6, 4, 1}), "a 24-byte box row accepted");
  std::vector<uint32_t> early(32), late(32);
  std::vector<float> copied(32);
  std::vector<int> phases(4, -1);
  emu::launch(dim3(1, 1, 1), 64, 4096, [&] {
    unsigned char* smem = emu::dynamic_shared_memory();
    uint64_t* bars = reinterpret_cast<uint64_t*>(smem + 2048);
    const int tid = int(threadIdx.x);
    if (tid == 0) {
      mbarrier_init(&bars[0], 2);
      mbarrier_init(&bars[1], 1);
    }
    __syncthreads();
    if (tid == 0) mbarrier_wait(&bars[0], 1);  // the phase before the first counts as complete
    if (tid < 2) mbarrier_arrive(&bars[0]);     // two arrivals complete phase 0
    mbarrier_wait(&bars[0], 0);
    if (tid == 0) phases[0] = 1;
    __syncthreads();
    if (tid < 2) mbarrier_arrive(&bars[0]);  // phase 1
    mbarrier_wait(&bars[0], 1);
    if (tid == 0) phases[1] = 1;
    // A copy of box (8 x 4) at (-3, 3, 1): columns -3..4, rows 3..6 of image 1.
    if (tid == 0) {
      mbarrier_arrive_expect_tx(&bars[1], 8 * 4 * 4);
      tma_load_3d(smem + 1024, &map, -3, 3, 1, &bars[1]);
    }
    __syncthreads();
    if (tid < 32) std::memcpy(&early[tid], smem + 1024 + 4 * tid, 4);
    __syncthreads();
    mbarrier_wait(&bars[1], 0);
    if (tid < 32) {
      std::memcpy(&late[tid], smem + 1024 + 4 * tid, 4);
      copied[tid] = reinterpret_cast<const float*>(smem + 1024)[tid];
    }
  });
  EXPECT(phases[0] == 1 && phases[1] == 1, "phases");
  for (int i = 0; i < 32; ++i) {
    EXPECT(early[i] == 0xffffffffu, "copy element %d visible before the wait: %08x", i, early[i]);
    const int bx = i % 8, by = i / 8, x = bx - 3, y = by + 3;
    const float expected = x >= 0 && x < W && y < H ? image[(1 * H + y) * W + x] : 0.f;
    EXPECT(copied[i] == expected, "copy element %d (x %d, y %d) = %g, expected %g", i, x, y, copied[i], expected);
  }
}

int main() {
  for (int swizzle : {0, 32, 64, 128}) {
    for (bool bf16 : {false, true}) {
      check_ss<32>(swizzle, bf16, 16);
      check_ss<16>(swizzle, bf16, 64);
    }
  }
  check_rs();
  check_async_order();
  check_mbarrier_and_copy();
  if (failures) {
    std::printf("%d failures\n", failures);
    return 1;
  }
  std::printf("hopper emulator: all checks passed\n");
  return 0;
}
