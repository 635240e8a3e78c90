// The whole ESPCN in one launch for Hopper (sm_90a), fp16 and bf16: wgmma for
// all three layers, the image brought in by TMA, a producer warpgroup and two
// consumer warpgroups. docs/gpu-notes.md has the design and arithmetic.
//
// A consumer takes a strip of kHopperStripCols LR columns and S rows (see
// tile_geometry.h) and goes down it a row at a time, keeping 3 rows of each
// intermediate in ring buffers: at step j it computes layer 1's row j (strip
// row j - 2), layer 2's row j - 2 (strip row j - 3) and layer 3's row j - 4
// (strip row j - 4). Every row is one wgmma M of 64 pixels: layer 1 over the
// strip plus 2 columns each side (A gathered from the image into registers),
// layers 2 and 3 over 64 pixels of which 62 and 60 are kept (A and B from
// shared memory). Intermediates are stored as core-matrix columns,
// [channel / 8][ring row][pixel][8 channels], so the A operand of tap (dy, dx)
// is the descriptor of ring row (row + dy) starting at pixel dx.
//
// This header holds no launch syntax, so the CPU emulator (tests/cpp)
// compiles it too; the launcher is espcn_hopper.cu.
#pragma once

#include <cstdint>

#include "../tile_geometry.h"
#include "hopper_ptx.cuh"
#include "kernels.h"
#include "precision.cuh"

namespace espcn::cuda {

// ROWS: the rows each layer computes per step (one wgmma M each, issued
// together before one wait); the rings keep ROWS + 2 rows.
template <int ROWS = 1>
struct HopperLayout {
  static constexpr int kThreads = 128 * (1 + kHopperConsumers);
  static constexpr int kStages = 3;  // image stages in flight
  static constexpr int kRow = 64;    // pixels of a computed row (one wgmma M)
  static constexpr int kRows = ROWS;
  static constexpr int kRing = ROWS + 2;  // rows kept of each intermediate
  // Ring rows hold 66 pixels: the last two, zero, are read by the taps of
  // the two computed pixels past what the next layer keeps.
  static constexpr int kRingCols = kRow + 2;
  // TMA box: the strip with its 4-pixel halo (68 columns), widened to 72 so
  // that a box row is a multiple of 16 bytes in float32 and float16.
  static constexpr int kBoxCols = 72;
  static constexpr int kBoxRows = kHopperMaxStripRows + 2 * kHalo;  // at most (a launch's box: its strip rows + 8)
  static constexpr int kN3 = 16;  // layer 3's r^2 <= 16 outputs, padded
  static constexpr int kK1 = 32;  // layer 1's 25 taps, padded

  // B operands: [K / 8][N][8] 16-bit values (N-major core matrices).
  static constexpr int kW1 = 0;
  static constexpr int kW2 = kW1 + kK1 * kC1 * 2;
  static constexpr int kW3 = kW2 + 9 * kC1 * kC2 * 2;
  static constexpr int kB1 = kW3 + 9 * kC2 * kN3 * 2;
  static constexpr int kB2 = kB1 + kC1 * 4;
  static constexpr int kB3 = kB2 + kC2 * 4;
  static constexpr int kBars = kB3 + kN3 * 4;  // full[kStages], empty[kStages]
  static constexpr int kIn = (kBars + 2 * kStages * 8 + 127) / 128 * 128;
  static constexpr int kStageBytes = kBoxRows * kBoxCols * 4;  // float32 (float16 uses half)
  static constexpr int kConsumer = kIn + kStages * kStageBytes;
  // A consumer's buffers, from its base.
  static constexpr int kAct1 = 0;
  static constexpr int kAct2 = kAct1 + (kC1 / 8) * kRing * kRingCols * 16;
  static constexpr int kHr = kAct2 + (kC2 / 8) * kRing * kRingCols * 16;
  static constexpr int kConsumerBytes = kHr + ROWS * kFusedMaxScale * kRow * kFusedMaxScale * 4;
  static constexpr int kBytes = kConsumer + kHopperConsumers * kConsumerBytes;
  // The K-direction step between channel groups of one ring (LBO).
  static constexpr int kRingPlane = kRing * kRingCols * 16;
  static_assert(kStageBytes % 128 == 0 && kIn % 128 == 0, "TMA destinations 128-byte aligned");
  static_assert(kConsumerBytes % 16 == 0 && kAct2 % 16 == 0 && kHr % 16 == 0, "16-byte core matrices");
  static_assert(kBytes <= 227 * 1024, "one block per SM on an H100/H200");
};

// The tensor map the launcher encodes for the image (and the emulator from
// the same numbers): dims (w, h, n) in elements, row and image pitches in
// bytes, the box (kBoxCols, the launch's strip rows + 8, 1): a strip with its
// halo, no more; zeros outside the image.
struct ImageMapShape {
  uint64_t dims[3];
  uint64_t pitches[2];
  uint32_t box[3];
  int element_bytes;
};

inline ImageMapShape image_map_shape(const EspcnArgs& a, int strip_rows) {
  const int es = a.half_io ? 2 : 4;
  return {{uint64_t(a.w), uint64_t(a.h), uint64_t(a.n)},
          {uint64_t(a.w) * es, uint64_t(a.w) * a.h * es},
          {HopperLayout<>::kBoxCols, uint32_t(strip_rows + 2 * kHalo), 1},
          es};
}

template <class P>
constexpr Mma16Type kMma16Type = std::is_same_v<P, Bf16> ? Mma16Type::kBf16 : Mma16Type::kF16;

// Weights (out, in, k, k) in Given's dtype -> P's [K / 8][N][8] B layout,
// K = tap * CIN + ci; outputs past cout and taps past k*k are zeros. Each
// thread issues kBatch loads before it stores any: the loads are gathers from
// L2, and one at a time they would cost a round trip each (48 a thread for
// layer 2) while the whole block waits for its weights.
template <class P, class Given, int N, int CIN, int KSIZE, int KPAD, int THREADS>
__device__ void fill_hopper_weights(typename P::Storage* dst, const void* w, int cout, int tid) {
  constexpr int kTotal = KPAD * N, kBatch = 16;
  for (int base = tid; base < kTotal; base += kBatch * THREADS) {
    float v[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int i = base + b * THREADS;
      const int e = i % 8, n = (i / 8) % N, k = (i / (8 * N)) * 8 + e;
      const int tap = k / CIN, ci = k % CIN;
      v[b] = i < kTotal && n < cout && tap < KSIZE * KSIZE
                 ? weight_value<Given>(w, (n * CIN + ci) * KSIZE * KSIZE + tap)
                 : 0.f;
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int i = base + b * THREADS;
      if (i < kTotal) dst[i] = P::store(v[b]);
    }
  }
}

template <class P, int ROWS = 1>
__global__ void __launch_bounds__(HopperLayout<ROWS>::kThreads, 1)
    espcn_hopper_kernel(const __grid_constant__ TensorMap map, EspcnArgs a, int strip_rows) {
#if defined(ESPCN_CUDA_EMULATION) || defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using L = HopperLayout<ROWS>;
  constexpr int R = ROWS;
  using S = typename P::Storage;
  using P1 = Layer1Precision<P>;
  using S1 = typename P1::Storage;
  constexpr Mma16Type kType = kMma16Type<P>;
  ESPCN_DYNAMIC_SHARED_MEMORY(smem);
  const int tid = int(threadIdx.x);
  const int r = a.scale, rr = r * r;

  constexpr int kT = L::kThreads;
  fill_hopper_weights<P1, P, kC1, 1, kK1, L::kK1, kT>(reinterpret_cast<S1*>(smem + L::kW1), a.w1, kC1, tid);
  fill_hopper_weights<P, P, kC2, kC1, kK2, 9 * kC1, kT>(reinterpret_cast<S*>(smem + L::kW2), a.w2, kC2, tid);
  fill_hopper_weights<P, P, L::kN3, kC2, kK3, 9 * kC2, kT>(reinterpret_cast<S*>(smem + L::kW3), a.w3, rr, tid);
  float* bias = reinterpret_cast<float*>(smem + L::kB1);
  for (int i = tid; i < kC1 + kC2 + L::kN3; i += L::kThreads) {
    bias[i] = i < kC1 ? a.b1[i] : i < kC1 + kC2 ? a.b2[i - kC1] : (i - kC1 - kC2 < rr ? a.b3[i - kC1 - kC2] : 0.f);
  }
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + L::kBars);
  uint64_t* empty = full + L::kStages;
  if (tid == 0) {
    for (int s = 0; s < L::kStages; ++s) {
      mbarrier_init(&full[s], 1);   // the producer's arrival (with the bytes)
      mbarrier_init(&empty[s], 1);  // the consumer's arrival when done with it
    }
    mbarrier_init_fence();
  }
  // Each consumer's zero ring columns (64, 65): never written again.
  for (int i = tid; i < kHopperConsumers * (kC1 / 8 + kC2 / 8) * L::kRing * 2; i += L::kThreads) {
    const int c = i / ((kC1 / 8 + kC2 / 8) * L::kRing * 2), j = i % ((kC1 / 8 + kC2 / 8) * L::kRing * 2);
    const int plane = j / 2, column = L::kRow + j % 2;  // plane: channel group x ring row, act1's then act2's
    unsigned char* base = smem + L::kConsumer + c * L::kConsumerBytes + L::kAct1;
    uint4* at = reinterpret_cast<uint4*>(base + (plane * L::kRingCols + column) * 16);
    *at = make_uint4(0, 0, 0, 0);
  }
  fence_proxy_async();  // weights and zero columns, stored generically, are read by wgmma
  __syncthreads();

  const TileShape shape{strip_rows, kHopperStripCols};
  const TileGrid grid(a.h, a.w, shape);
  const int strips = int(grid.count(a.n));
  const int role = warp_uniform(tid / 128);  // 0: producer, 1..: consumers

  if (role == 0) {
    if (tid != 0) return;
    for (int i = 0;; ++i) {
      const int strip = int(blockIdx.x) + i * int(gridDim.x);
      if (strip >= strips) break;
      const int stage = i % L::kStages;
      if (i >= L::kStages) mbarrier_wait(&empty[stage], uint32_t((i / L::kStages - 1) & 1));
      int image, y0, x0;
      grid.locate(strip, shape, &image, &y0, &x0);
      const uint32_t bytes = uint32_t((strip_rows + 2 * kHalo) * L::kBoxCols * (a.half_io ? 2 : 4));
      mbarrier_arrive_expect_tx(&full[stage], bytes);
      tma_load_3d(smem + L::kIn + stage * L::kStageBytes, &map, x0 - kHalo, y0 - kHalo, image, &full[stage]);
    }
    return;
  }

  const int consumer = role - 1;
  const int t128 = tid % 128, warp = t128 / 32, g = (t128 % 32) / 4, t = t128 % 4;
  unsigned char* own = smem + L::kConsumer + consumer * L::kConsumerBytes;
  S* act1 = reinterpret_cast<S*>(own + L::kAct1);
  S* act2 = reinterpret_cast<S*>(own + L::kAct2);
  float* hr = reinterpret_cast<float*>(own + L::kHr);
  const float* b1 = bias;
  const float* b2 = bias + kC1;
  const float* b3 = bias + kC1 + kC2;
  const uint32_t w1_addr = smem_address(smem + L::kW1), w2_addr = smem_address(smem + L::kW2);
  const uint32_t w3_addr = smem_address(smem + L::kW3);
  const uint32_t act1_addr = smem_address(act1), act2_addr = smem_address(act2);
  const int64_t hr_h = int64_t(a.h) * r, hr_w = int64_t(a.w) * r;
  auto sync = [consumer] { named_barrier(1 + consumer, 128); };
  // Element (channel n, ring row, pixel) of a ring of core-matrix columns.
  auto ring_at = [](int n, int row, int pixel) { return ((n / 8 * L::kRing + row) * L::kRingCols + pixel) * 8 + n % 8; };
  const int row_lo = 16 * warp + g;  // this thread's D rows (pixels): row_lo, row_lo + 8

  for (int i = consumer;; i += kHopperConsumers) {
    const int strip = int(blockIdx.x) + i * int(gridDim.x);
    if (strip >= strips) break;
    const int stage = i % L::kStages;
    int image, y0, x0;
    grid.locate(strip, shape, &image, &y0, &x0);
    const int rows = min(strip_rows, a.h - y0);
    mbarrier_wait(&full[stage], uint32_t((i / L::kStages) & 1));
    const unsigned char* in = smem + L::kIn + stage * L::kStageBytes;

    // Step j: layer 1's rows jR.. (image rows y0 - 2 + ...), layer 2's rows
    // jR - 2.. (image rows y0 - 1 + ...), layer 3's strip rows jR - 4...; a
    // row past what the strip needs is skipped (the same for the whole warpgroup).
    for (int j = 0; j * R < rows + 4; ++j) {
      // Layer 1 from box rows row..row+4 (box row 0: image row y0 - 4).
      {
        float d[R][32];
        uint32_t frag[R][2][4];
#pragma unroll
        for (int u = 0; u < R; ++u) {
          const int row1 = j * R + u;
#pragma unroll
          for (int nb = 0; nb < 8; ++nb) {
#pragma unroll
            for (int q = 0; q < 4; ++q) d[u][4 * nb + q] = b1[8 * nb + 2 * t + q % 2];
          }
#pragma unroll
          for (int s = 0; s < 2; ++s) {
            auto tap = [&](int pixel, int k) -> uint32_t {
              if (k >= kK1 * kK1 || row1 >= rows + 4) return 0u;
              const int at = (row1 + k / kK1) * L::kBoxCols + pixel + k % kK1;
              const float v = a.half_io ? __half2float(reinterpret_cast<const __half*>(in)[at])
                                        : reinterpret_cast<const float*>(in)[at];
              return bits_of<P1>(P1::store(v));
            };
            auto pair = [&](int pixel, int k) { return tap(pixel, k) | (tap(pixel, k + 1) << 16); };
            const int k0 = 16 * s + 2 * t;
            frag[u][s][0] = pair(row_lo, k0);
            frag[u][s][1] = pair(row_lo + 8, k0);
            frag[u][s][2] = pair(row_lo, k0 + 8);
            frag[u][s][3] = pair(row_lo + 8, k0 + 8);
          }
          accumulator_fence(d[u]);
        }
        wgmma_fence();
#pragma unroll
        for (int u = 0; u < R; ++u) {  // (a row past the strip multiplies zeros; its result is dropped)
#pragma unroll
          for (int s = 0; s < 2; ++s) {
            wgmma_m64n64k16_rs_f16(d[u], frag[u][s], matrix_descriptor(w1_addr + s * 2 * kC1 * 16, kC1 * 16, 128));
          }
        }
        wgmma_commit();
        wgmma_wait_all();
#pragma unroll
        for (int u = 0; u < R; ++u) {
          accumulator_fence(d[u]);
          const int row1 = j * R + u;
          if (row1 >= rows + 4) continue;
          const int gy = y0 - kHalo2 + row1;
          const int slot = row1 % L::kRing;
#pragma unroll
          for (int h2 = 0; h2 < 2; ++h2) {
            const int pixel = row_lo + 8 * h2;
            const int gx = x0 - kHalo2 + pixel;
            const bool inside = gy >= 0 && gy < a.h && gx >= 0 && gx < a.w;
#pragma unroll
            for (int nb = 0; nb < 8; ++nb) {
              const int n = 8 * nb + 2 * t;
              const float v0 = d[u][4 * nb + 2 * h2], v1 = d[u][4 * nb + 2 * h2 + 1];
              store_pair<P>(act1 + ring_at(n, slot, pixel), inside ? P::tanh(v0) : 0.f, inside ? P::tanh(v1) : 0.f);
            }
          }
        }
      }
      fence_proxy_async();
      sync();

      // Layer 2: each row from layer 1's rows row..row+2.
      if ((j + 1) * R > 2) {
        float d[R][16];
#pragma unroll
        for (int u = 0; u < R; ++u) {
#pragma unroll
          for (int nb = 0; nb < 4; ++nb) {
#pragma unroll
            for (int q = 0; q < 4; ++q) d[u][4 * nb + q] = b2[8 * nb + 2 * t + q % 2];
          }
          accumulator_fence(d[u]);
        }
        wgmma_fence();
#pragma unroll
        for (int u = 0; u < R; ++u) {
          // Every row's wgmmas are issued (a branch around them serialises
          // them); a row outside the strip reads a ring row in range, and its
          // result is dropped.
          const int row2 = min(max(j * R + u - 2, 0), rows + 1);
#pragma unroll
          for (int tp = 0; tp < 9; ++tp) {
            const int slot = (row2 + tp / 3) % L::kRing, dx = tp % 3;
#pragma unroll
            for (int s = 0; s < kC1 / 16; ++s) {
              const uint32_t a_addr = act1_addr + ((2 * s * L::kRing + slot) * L::kRingCols + dx) * 16;
              const uint32_t b_addr = w2_addr + (tp * kC1 / 8 + 2 * s) * kC2 * 16;
              wgmma_m64n32k16_ss<kType>(d[u], matrix_descriptor(a_addr, L::kRingPlane, 128),
                                        matrix_descriptor(b_addr, kC2 * 16, 128));
            }
          }
        }
        wgmma_commit();
        wgmma_wait_all();
#pragma unroll
        for (int u = 0; u < R; ++u) {
          accumulator_fence(d[u]);
          const int row2 = j * R + u - 2;
          if (row2 < 0 || row2 >= rows + 2) continue;
          const int gy = y0 - kHalo3 + row2;
          const int slot = row2 % L::kRing;
#pragma unroll
          for (int h2 = 0; h2 < 2; ++h2) {
            const int pixel = row_lo + 8 * h2;
            const int gx = x0 - kHalo3 + pixel;
            const bool inside = pixel < kHopperStripCols + 2 * kHalo3 && gy >= 0 && gy < a.h && gx >= 0 && gx < a.w;
#pragma unroll
            for (int nb = 0; nb < 4; ++nb) {
              const int n = 8 * nb + 2 * t;
              const float v0 = d[u][4 * nb + 2 * h2], v1 = d[u][4 * nb + 2 * h2 + 1];
              store_pair<P>(act2 + ring_at(n, slot, pixel), inside ? P::tanh(v0) : 0.f, inside ? P::tanh(v1) : 0.f);
            }
          }
        }
      }
      fence_proxy_async();
      sync();

      // Layer 3 and the pixel shuffle: each strip row from layer 2's rows row..row+2.
      if ((j + 1) * R > 4) {
        float d[R][8];
#pragma unroll
        for (int u = 0; u < R; ++u) {
#pragma unroll
          for (int nb = 0; nb < 2; ++nb) {
#pragma unroll
            for (int q = 0; q < 4; ++q) d[u][4 * nb + q] = b3[8 * nb + 2 * t + q % 2];
          }
          accumulator_fence(d[u]);
        }
        wgmma_fence();
#pragma unroll
        for (int u = 0; u < R; ++u) {
          const int row3 = min(max(j * R + u - 4, 0), rows - 1);  // (as in layer 2)
#pragma unroll
          for (int tp = 0; tp < 9; ++tp) {
            const int slot = (row3 + tp / 3) % L::kRing, dx = tp % 3;
#pragma unroll
            for (int s = 0; s < kC2 / 16; ++s) {
              const uint32_t a_addr = act2_addr + ((2 * s * L::kRing + slot) * L::kRingCols + dx) * 16;
              const uint32_t b_addr = w3_addr + (tp * kC2 / 8 + 2 * s) * L::kN3 * 16;
              wgmma_m64n16k16_ss<kType>(d[u], matrix_descriptor(a_addr, L::kRingPlane, 128),
                                        matrix_descriptor(b_addr, L::kN3 * 16, 128));
            }
          }
        }
        wgmma_commit();
        wgmma_wait_all();
        // Staged as r HR rows of 64 r pixels per strip row, then written along them.
        const int stage_w = L::kRow * r, width = kHopperStripCols * r;
#pragma unroll
        for (int u = 0; u < R; ++u) {
          accumulator_fence(d[u]);
#pragma unroll
          for (int q = 0; q < 8; ++q) {
            const int pixel = row_lo + 8 * (q / 2 % 2), c = 8 * (q / 4) + 2 * t + q % 2;
            if (c < rr && pixel < kHopperStripCols) {
              hr[(u * r + c / r) * stage_w + pixel * r + c % r] = a.clamp ? clamp_unit(d[u][q]) : d[u][q];
            }
          }
        }
        sync();
        const int first = max(j * R - 4, 0), last = min(j * R - 4 + R, rows);  // strip rows [first, last)
        const int u0 = first - (j * R - 4);
        for (int e = t128; e < (last - first) * r * width; e += 128) {
          const int sub = e / width, col = e % width;  // HR row of the step, column of the strip
          const int64_t x = int64_t(x0) * r + col;
          if (x < hr_w) {
            const int64_t at = (int64_t(image) * hr_h + int64_t(y0 + first) * r + sub) * hr_w + x;
            const float v = hr[(u0 * r + sub) * stage_w + col];
            if (a.half_io) {
              static_cast<__half*>(a.out)[at] = __float2half_rn(v);
            } else {
              static_cast<float*>(a.out)[at] = v;
            }
          }
        }
      }
    }
    // The image stage is read for the last time by layer 1 above.
    sync();
    if (t128 == 0) mbarrier_arrive(&empty[stage]);
  }
#endif
}

}  // namespace espcn::cuda
