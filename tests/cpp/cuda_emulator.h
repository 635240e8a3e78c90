// A CPU emulator for the fused CUDA kernel: enough of CUDA to run its code
// unchanged on a machine without a GPU, slowly. Each block runs its threads
// as OS threads, __syncthreads is a block barrier, and the warp collectives
// (ldmatrix, mma.sync) exchange their operands through per-warp scratch and
// rebuild the whole matrices from the fragment layouts of the PTX ISA, written
// out here independently of the kernel (csrc/cuda/ptx.cuh lists them).
// Shared memory starts poisoned (0xff bytes: NaN in every float format), so
// a read of a value no thread wrote shows up in the output.
//
// Include this before any kernel header, with ESPCN_CUDA_EMULATION defined.
#pragma once

#if !defined(ESPCN_CUDA_EMULATION)
#error "define ESPCN_CUDA_EMULATION before including the emulator"
#endif

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

using std::max;
using std::min;

namespace emu {

struct Warp {
  std::unique_ptr<std::barrier<>> barrier;
  const void* address[32];
  uint32_t a[32][4];
  uint2 b[32];
};

struct Block {
  std::vector<unsigned char> shared;
  std::unique_ptr<std::barrier<>> barrier;
  std::mutex named_mutex;  // bar.sync id, count: made on first use
  std::map<int, std::unique_ptr<std::barrier<>>> named;
  std::vector<Warp> warps;
  dim3 block_idx, grid_dim, block_dim;
  std::shared_ptr<void> hopper;  // hopper_emulator.h's mbarriers and copies in flight, made on first use
};

inline thread_local Block* current = nullptr;
inline thread_local unsigned thread_x = 0;

inline unsigned char* dynamic_shared_memory() { return current->shared.data(); }
inline void syncthreads() { current->barrier->arrive_and_wait(); }
inline void named_barrier(int id, int count) {
  std::barrier<>* b;
  {
    std::lock_guard<std::mutex> lock(current->named_mutex);
    auto& slot = current->named[id];
    if (!slot) slot = std::make_unique<std::barrier<>>(count);
    b = slot.get();
  }
  b->arrive_and_wait();
}
inline Warp& warp() { return current->warps[thread_x / 32]; }
inline unsigned lane() { return thread_x % 32; }

inline dim3 thread_idx() { return dim3(thread_x, 0, 0); }

// Runs body() as grid.x * grid.y blocks of `threads` threads, one block after another.
template <class Body>
void launch(dim3 grid, unsigned threads, size_t shared_bytes, Body body) {
  for (unsigned b = 0; b < grid.x * grid.y; ++b) {
    Block block;
    block.shared.assign(shared_bytes + 16, 0xff);
    block.barrier = std::make_unique<std::barrier<>>(threads);
    block.warps.resize(threads / 32);
    for (auto& w : block.warps) w.barrier = std::make_unique<std::barrier<>>(32);
    block.block_idx = dim3(b % grid.x, b / grid.x, 0);
    block.grid_dim = dim3(grid.x, grid.y, 1);
    block.block_dim = dim3(threads, 1, 1);
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t) {
      pool.emplace_back([&block, &body, t] {
        current = &block;
        thread_x = t;
        body();
      });
    }
    for (auto& t : pool) t.join();
  }
}

inline float bits_to_float(uint32_t v) {
  float f;
  std::memcpy(&f, &v, 4);
  return f;
}

inline uint32_t float_to_bits(float f) {
  uint32_t v;
  std::memcpy(&v, &f, 4);
  return v;
}

inline float half_bits(uint32_t v) {
  __half_raw r;
  r.x = uint16_t(v);
  return __half2float(__half(r));
}

inline float bf16_bits(uint32_t v) { return bits_to_float(uint32_t(uint16_t(v)) << 16); }

// D = A (16 x K) B (K x 8) + C for the calling lane's four C elements; every
// lane of the warp calls it together with its own fragments.
template <int K, class Decode>
void mma(float (&c)[4], const uint32_t (&a)[4], uint2 b, Decode decode) {
  Warp& w = warp();
  const unsigned l = lane();
  std::memcpy(w.a[l], a, sizeof(a));
  w.b[l] = b;
  w.barrier->arrive_and_wait();
  float A[16][K], B[K][8];
  for (int src = 0; src < 32; ++src) {
    const int g = src / 4, t = src % 4;
    if constexpr (K == 16) {
      // a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..); low half = lower k.
      const int rows[4] = {g, g + 8, g, g + 8}, cols[4] = {2 * t, 2 * t, 2 * t + 8, 2 * t + 8};
      for (int r = 0; r < 4; ++r) {
        A[rows[r]][cols[r]] = decode(w.a[src][r] & 0xffff);
        A[rows[r]][cols[r] + 1] = decode(w.a[src][r] >> 16);
      }
      // b0 (k 2t..2t+1, n g), b1 (k 2t+8..2t+9, n g).
      B[2 * t][g] = decode(w.b[src].x & 0xffff);
      B[2 * t + 1][g] = decode(w.b[src].x >> 16);
      B[2 * t + 8][g] = decode(w.b[src].y & 0xffff);
      B[2 * t + 9][g] = decode(w.b[src].y >> 16);
    } else {
      // tf32: a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4); b0 (k t, n g), b1 (k t+4, n g).
      A[g][t] = decode(w.a[src][0]);
      A[g + 8][t] = decode(w.a[src][1]);
      A[g][t + 4] = decode(w.a[src][2]);
      A[g + 8][t + 4] = decode(w.a[src][3]);
      B[t][g] = decode(w.b[src].x);
      B[t + 4][g] = decode(w.b[src].y);
    }
  }
  w.barrier->arrive_and_wait();
  const int g = l / 4, t = l % 4;
  const int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
  for (int i = 0; i < 4; ++i) {
    float sum = c[i];
    for (int k = 0; k < K; ++k) sum += A[rows[i]][k] * B[k][cols[i]];
    c[i] = sum;
  }
}

}  // namespace emu

// What the kernel code spells in CUDA.
#define __launch_bounds__(...)
#define threadIdx (::emu::thread_idx())
#define blockIdx (::emu::current->block_idx)
#define gridDim (::emu::current->grid_dim)
#define blockDim (::emu::current->block_dim)
#define __syncthreads() ::emu::syncthreads()

inline float __uint_as_float(uint32_t v) { return emu::bits_to_float(v); }
inline uint32_t __float_as_uint(float f) { return emu::float_to_bits(f); }

namespace espcn::cuda {

inline float tanh_approx(float x) { return std::tanh(x); }
inline float clamp_unit(float x) { return std::isnan(x) ? x : std::min(std::max(x, 0.f), 1.f); }
inline void named_barrier(int id, int count) { emu::named_barrier(id, count); }

// cvt.rna.tf32.f32: keep 10 mantissa bits, round to nearest with ties away from zero.
inline float round_tf32(float x) {
  if (!std::isfinite(x)) return x;
  return emu::bits_to_float((emu::float_to_bits(x) + 0x1000u) & 0xffffe000u);
}

// ldmatrix .x4: lane l gives the address of row l % 8 of matrix l / 8; each
// lane receives, of matrix i, row lane / 4, columns 2 (lane % 4) and +1.
inline void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  emu::Warp& w = emu::warp();
  const unsigned l = emu::lane();
  w.address[l] = p;
  w.barrier->arrive_and_wait();
  for (int i = 0; i < 4; ++i) {
    const uint16_t* row = static_cast<const uint16_t*>(w.address[i * 8 + l / 4]);
    r[i] = uint32_t(row[2 * (l % 4)]) | (uint32_t(row[2 * (l % 4) + 1]) << 16);
  }
  w.barrier->arrive_and_wait();
}

inline void mma_m16n8k16_f16(float (&c)[4], const uint32_t (&a)[4], uint2 b) {
  emu::mma<16>(c, a, b, emu::half_bits);
}

inline void mma_m16n8k16_bf16(float (&c)[4], const uint32_t (&a)[4], uint2 b) {
  emu::mma<16>(c, a, b, emu::bf16_bits);
}

// The tensor cores read the top 19 bits of a tf32 operand.
inline void mma_m16n8k8_tf32(float (&c)[4], const uint32_t (&a)[4], uint2 b) {
  emu::mma<8>(c, a, b, [](uint32_t v) { return emu::bits_to_float(v & 0xffffe000u); });
}

}  // namespace espcn::cuda
