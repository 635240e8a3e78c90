// The sm_90a part of the CPU emulator: wgmma (shared-memory matrix
// descriptors with their swizzle modes, register A fragments, the
// accumulator layout), mbarriers (arrivals, transaction bytes, phase
// parity) and TMA tensor copies, written from the PTX ISA's text; the
// wrappers of csrc/cuda/hopper_ptx.cuh are defined here. What the hardware
// does asynchronously happens late here, so that a kernel relying on the
// wrong order gets wrong numbers:
// - a wgmma reads its shared-memory operands and writes its accumulators
//   only at the wgmma.wait_group that retires it (a store to an operand
//   before that wait, or a read of an accumulator, shows);
// - a tensor copy fills its destination with 0xff bytes (NaN) when issued,
//   and the data lands only when a thread waits on its mbarrier;
// - a wgmma issued without a wgmma.fence since the last wait, a copy to a
//   misaligned address, an arrival on an uninitialised barrier or a wait
//   that never ends stop the program with a message.
// Not modelled: the proxy fences (fence.proxy.async, fence.mbarrier_init are
// no-ops here, so a missing one goes unseen) and the hardware's own
// accumulation order and rounding (sums here are exact in double).
//
// Include after cuda_emulator.h and before the kernel headers.
#pragma once

#include "cuda_emulator.h"

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>

#undef __grid_constant__
#define __grid_constant__

namespace emu {

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "hopper emulator: %s\n", what);
  std::abort();
}

// What cuTensorMapEncodeTiled records for a 3-D tiled map without
// interleave or swizzle, element strides 1: the global base, the sizes in
// elements, the pitches of dimensions 1 and 2 in bytes, the box.
struct TensorMap {
  const void* base = nullptr;
  int element_bytes = 0;
  uint64_t dims[3] = {};
  uint64_t pitches[2] = {};
  uint32_t box[3] = {};
};

// The checks cuTensorMapEncodeTiled makes of these fields (CUDA driver API):
// a 16-byte aligned base, pitches multiples of 16 bytes, boxes of 1..256
// elements a side, a box row a multiple of 16 bytes.
inline bool encode_tiled(TensorMap* map, const void* base, int element_bytes, const uint64_t (&dims)[3],
                         const uint64_t (&pitches)[2], const uint32_t (&box)[3]) {
  if (reinterpret_cast<uintptr_t>(base) % 16 != 0) return false;
  for (uint64_t p : pitches)
    if (p % 16 != 0) return false;
  for (uint32_t b : box)
    if (b < 1 || b > 256) return false;
  if (box[0] * element_bytes % 16 != 0) return false;
  *map = TensorMap{base, element_bytes, {dims[0], dims[1], dims[2]}, {pitches[0], pitches[1]}, {box[0], box[1], box[2]}};
  return true;
}

struct MBarrier {
  bool ready = false;
  uint32_t count = 0, pending = 0, phase = 0;
  int64_t tx = 0;
};

struct PendingCopy {
  uint32_t dst;
  TensorMap map;
  int x, y, z;
};

struct AsyncState {
  std::mutex mutex;
  std::condition_variable changed;
  std::map<uint32_t, MBarrier> bars;
  std::map<uint32_t, std::vector<PendingCopy>> copies;  // by the mbarrier they complete on
};

inline AsyncState& async_state() {
  std::lock_guard<std::mutex> lock(current->named_mutex);
  if (!current->hopper) current->hopper = std::make_shared<AsyncState>();
  return *static_cast<AsyncState*>(current->hopper.get());
}

// The shared-memory address (offset in the block's shared memory) of p.
inline uint32_t shared_offset(const void* p) {
  const unsigned char* c = static_cast<const unsigned char*>(p);
  const unsigned char* base = current->shared.data();
  if (c < base || c >= base + current->shared.size()) fail("an address outside shared memory");
  return uint32_t(c - base);
}

inline unsigned char* shared_at(uint32_t offset, uint32_t bytes) {
  if (uint64_t(offset) + bytes > current->shared.size() - 16) fail("a shared-memory access past the allocation");
  return current->shared.data() + offset;
}

// Completes the phase when every arrival and every transaction byte is in.
inline void settle(AsyncState& s, MBarrier& b) {
  if (b.pending == 0 && b.tx == 0) {
    ++b.phase;
    b.pending = b.count;
    s.changed.notify_all();
  }
}

inline MBarrier& barrier_at(AsyncState& s, uint32_t offset) {
  auto it = s.bars.find(offset);
  if (it == s.bars.end() || !it->second.ready) fail("an mbarrier used before mbarrier.init");
  return it->second;
}

inline void arrive(uint32_t offset, int64_t tx) {
  AsyncState& s = async_state();
  std::lock_guard<std::mutex> lock(s.mutex);
  MBarrier& b = barrier_at(s, offset);
  if (b.pending == 0) fail("more arrivals than the mbarrier's count in one phase");
  b.tx += tx;
  --b.pending;
  settle(s, b);
}

// The copy's data, element by element: zeros outside the tensor.
inline void deliver(AsyncState& s, uint32_t bar, const PendingCopy& c) {
  const TensorMap& m = c.map;
  const int es = m.element_bytes;
  unsigned char* dst = shared_at(c.dst, m.box[0] * m.box[1] * m.box[2] * es);
  for (uint32_t bz = 0; bz < m.box[2]; ++bz)
    for (uint32_t by = 0; by < m.box[1]; ++by)
      for (uint32_t bx = 0; bx < m.box[0]; ++bx) {
        const int64_t gx = int64_t(c.x) + bx, gy = int64_t(c.y) + by, gz = int64_t(c.z) + bz;
        unsigned char* to = dst + ((size_t(bz) * m.box[1] + by) * m.box[0] + bx) * es;
        if (gx < 0 || gy < 0 || gz < 0 || uint64_t(gx) >= m.dims[0] || uint64_t(gy) >= m.dims[1] ||
            uint64_t(gz) >= m.dims[2]) {
          std::memset(to, 0, es);
        } else {
          const unsigned char* from = static_cast<const unsigned char*>(m.base) + uint64_t(gz) * m.pitches[1] +
                                      uint64_t(gy) * m.pitches[0] + uint64_t(gx) * es;
          std::memcpy(to, from, es);
        }
      }
  MBarrier& b = barrier_at(s, bar);
  b.tx -= int64_t(m.box[0]) * m.box[1] * m.box[2] * es;
  settle(s, b);
}

inline void mbarrier_wait(uint32_t offset, uint32_t parity) {
  AsyncState& s = async_state();
  std::unique_lock<std::mutex> lock(s.mutex);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  for (;;) {
    auto it = s.copies.find(offset);
    if (it != s.copies.end()) {
      std::vector<PendingCopy> due;
      due.swap(it->second);
      s.copies.erase(it);
      for (const PendingCopy& c : due) deliver(s, offset, c);
    }
    // try_wait.parity: true once the phase of that parity has completed,
    // i.e. the current phase's parity differs from it.
    if ((barrier_at(s, offset).phase & 1u) != (parity & 1u)) return;
    if (s.changed.wait_until(lock, std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(20))) ==
            std::cv_status::timeout &&
        std::chrono::steady_clock::now() >= deadline)
      fail("an mbarrier wait that never completes (deadlock)");
  }
}

// A K-major operand element's shared-memory address from its descriptor:
// core matrices of 8 rows x 16 bytes, SBO apart along M/N and LBO along K
// (no swizzle); swizzled modes keep 8 rows of 32/64/128 bytes in an atom,
// atoms SBO apart, and XOR the 16-byte column (address bits 4..) with the
// row within the atom (address bits 7..).
inline uint32_t operand_address(uint64_t desc, int row, int k, int element_bytes) {
  const uint32_t start = uint32_t(desc & 0x3fff) << 4;
  const uint32_t lbo = uint32_t((desc >> 16) & 0x3fff) << 4;
  const uint32_t sbo = uint32_t((desc >> 32) & 0x3fff) << 4;
  const uint32_t base_offset = uint32_t((desc >> 49) & 0x7);
  const uint32_t mode = uint32_t(desc >> 62);
  if (base_offset != 0) fail("descriptor base offsets are not emulated");
  const uint32_t kb = uint32_t(k * element_bytes);
  if (mode == 0) return start + (row / 8) * sbo + (kb / 16) * lbo + (row % 8) * 16 + kb % 16;
  const uint32_t width = mode == 1 ? 128 : mode == 2 ? 64 : 32;
  const uint32_t columns = width / 16 - 1;  // the 16-byte column bits XORed
  const uint32_t plain = start + (row / 8) * sbo + (kb / width) * lbo + (row % 8) * width + kb % width;
  return plain ^ (((plain >> 7) & columns) << 4);
}

inline float f16_value(uint16_t v) { return half_bits(v); }
inline float bf16_value(uint16_t v) { return bf16_bits(v); }

inline float operand(uint64_t desc, int row, int k, float (*decode)(uint16_t)) {
  uint16_t v;
  std::memcpy(&v, shared_at(operand_address(desc, row, k, 2), 2), 2);
  return decode(v);
}

struct WgmmaState {
  bool fenced = false;
  std::vector<std::function<void()>> open;
  std::deque<std::vector<std::function<void()>>> groups;
};
inline thread_local WgmmaState wgmma_state;

inline void issue(std::function<void()> op) {
  if (!wgmma_state.fenced) fail("wgmma.mma_async without a wgmma.fence since the last wait");
  wgmma_state.open.push_back(std::move(op));
}

// The calling thread's accumulator element q of an m64nN D: warp w of the
// warpgroup holds rows 16w..16w+15; d[4j + i] is row 16w + g + 8 (i / 2),
// column 8j + 2t + i % 2.
inline void d_position(int q, int* row, int* col) {
  const int l = int(thread_x % 128), w = l / 32, g = (l % 32) / 4, t = l % 4;
  *row = 16 * w + g + 8 * ((q % 4) / 2);
  *col = 8 * (q / 4) + 2 * t + q % 2;
}

// D (64 x N) += A (64 x 16) B (16 x N), A and B from descriptors.
template <int N>
void wgmma_ss(float* d, uint64_t desc_a, uint64_t desc_b, float (*decode)(uint16_t)) {
  int rows[N / 2], cols[N / 2];
  for (int q = 0; q < N / 2; ++q) d_position(q, &rows[q], &cols[q]);
  issue([=] {
    for (int q = 0; q < N / 2; ++q) {
      double sum = 0;
      for (int k = 0; k < 16; ++k) sum += double(operand(desc_a, rows[q], k, decode)) * operand(desc_b, cols[q], k, decode);
      d[q] = float(double(d[q]) + sum);
    }
  });
}

// As wgmma_ss with A from registers: the warp's 16 rows, as mma.m16n8k16's A
// (a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..); the
// lower k in the low half). Gathered across the warp at issue.
template <int N>
void wgmma_rs(float* d, const uint32_t (&a)[4], uint64_t desc_b, float (*decode)(uint16_t)) {
  Warp& w = warp();
  const unsigned l = lane();
  std::memcpy(w.a[l], a, sizeof(a));
  w.barrier->arrive_and_wait();
  std::array<float, 256> A{};  // [row within the warp][k]
  for (int src = 0; src < 32; ++src) {
    const int g = src / 4, t = src % 4;
    for (int reg = 0; reg < 4; ++reg) {
      const int row = g + 8 * (reg % 2), k = 2 * t + 8 * (reg / 2);
      A[row * 16 + k] = decode(uint16_t(w.a[src][reg] & 0xffff));
      A[row * 16 + k + 1] = decode(uint16_t(w.a[src][reg] >> 16));
    }
  }
  w.barrier->arrive_and_wait();
  int rows[N / 2], cols[N / 2];
  for (int q = 0; q < N / 2; ++q) d_position(q, &rows[q], &cols[q]);
  issue([=] {
    for (int q = 0; q < N / 2; ++q) {
      double sum = 0;
      for (int k = 0; k < 16; ++k) sum += double(A[(rows[q] % 16) * 16 + k]) * operand(desc_b, cols[q], k, decode);
      d[q] = float(double(d[q]) + sum);
    }
  });
}

}  // namespace emu

// The wrappers' declarations (and Mma16Type), emulated below.
#include "../../csrc/cuda/hopper_ptx.cuh"

namespace espcn::cuda {

inline uint32_t smem_address(const void* p) { return emu::shared_offset(p); }

inline void mbarrier_init(uint64_t* bar, uint32_t count) {
  emu::AsyncState& s = emu::async_state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (count == 0) emu::fail("mbarrier.init with a count of 0");
  s.bars[emu::shared_offset(bar)] = emu::MBarrier{true, count, count, 0, 0};
}
inline void mbarrier_init_fence() {}
inline void mbarrier_arrive(uint64_t* bar) { emu::arrive(emu::shared_offset(bar), 0); }
inline void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) { emu::arrive(emu::shared_offset(bar), bytes); }
inline void mbarrier_wait(uint64_t* bar, uint32_t parity) { emu::mbarrier_wait(emu::shared_offset(bar), parity); }

inline void tma_load_3d(void* dst, const TensorMap* map, int x, int y, int z, uint64_t* bar) {
  const uint32_t to = emu::shared_offset(dst), at = emu::shared_offset(bar);
  if (to % 128 != 0) emu::fail("a tensor copy to shared memory not 128-byte aligned");
  const uint32_t bytes = map->box[0] * map->box[1] * map->box[2] * map->element_bytes;
  emu::AsyncState& s = emu::async_state();
  std::lock_guard<std::mutex> lock(s.mutex);
  emu::barrier_at(s, at);
  std::memset(emu::shared_at(to, bytes), 0xff, bytes);
  s.copies[at].push_back(emu::PendingCopy{to, *map, x, y, z});
  s.changed.notify_all();
}

// __shfl_sync(all, v, 0) through the warp's scratch.
inline int warp_uniform(int v) {
  emu::Warp& w = emu::warp();
  w.a[emu::lane()][0] = uint32_t(v);
  w.barrier->arrive_and_wait();
  const int lane0 = int(w.a[0][0]);
  w.barrier->arrive_and_wait();
  return lane0;
}

inline void fence_proxy_async() {}
inline void wgmma_fence() { emu::wgmma_state.fenced = true; }
inline void wgmma_commit() {
  emu::wgmma_state.groups.push_back(std::move(emu::wgmma_state.open));
  emu::wgmma_state.open.clear();
}
inline void wgmma_wait_all() {
  if (!emu::wgmma_state.open.empty()) emu::fail("wgmma.wait_group with wgmmas not committed");
  for (auto& group : emu::wgmma_state.groups)
    for (auto& op : group) op();
  emu::wgmma_state.groups.clear();
  emu::wgmma_state.fenced = false;
}
template <int N>
inline void accumulator_fence(float (&)[N]) {}

inline void wgmma_m64n64k16_rs_f16(float (&d)[32], const uint32_t (&a)[4], uint64_t desc_b) {
  emu::wgmma_rs<64>(d, a, desc_b, emu::f16_value);
}
template <Mma16Type T>
inline void wgmma_m64n32k16_ss(float (&d)[16], uint64_t desc_a, uint64_t desc_b) {
  emu::wgmma_ss<32>(d, desc_a, desc_b, T == Mma16Type::kF16 ? emu::f16_value : emu::bf16_value);
}
template <Mma16Type T>
inline void wgmma_m64n16k16_ss(float (&d)[8], uint64_t desc_a, uint64_t desc_b) {
  emu::wgmma_ss<16>(d, desc_a, desc_b, T == Mma16Type::kF16 ? emu::f16_value : emu::bf16_value);
}

}  // namespace espcn::cuda
