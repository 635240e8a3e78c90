// The whole ESPCN in one launch. A persistent grid: each block loads every
// weight into shared memory once, then loops over output tiles; per tile it
// loads the image with its 4-pixel halo, computes layer 1 over the tile plus 2
// pixels, layer 2 over the tile plus 1, layer 3 over the tile, keeping both
// intermediates in shared memory, stages the pixel-shuffled HR tile there and
// writes it out along HR rows. Only the image is read and only the HR output
// written. The launcher is in espcn_fused.cuh; this header holds no launch
// syntax, so the CPU emulator (tests/cpp) compiles it too.
#pragma once

#include <cstdint>
#include <type_traits>

#include "../tile_geometry.h"
#include "conv_stage.cuh"
#include "kernels.h"
#include "precision.cuh"

namespace espcn::cuda {

constexpr int align16(int bytes) { return (bytes + 15) / 16 * 16; }

// Shared-memory layout of the fused kernel for precision P and a TH x TW tile.
template <class P, int TH, int TW>
struct FusedLayout {
  using Storage = typename P::Storage;
  static constexpr int kInH = TH + 2 * kHalo, kInW = TW + 2 * kHalo;
  static constexpr int kA1H = TH + 2 * kHalo2, kA1W = TW + 2 * kHalo2;
  static constexpr int kA2H = TH + 2 * kHalo3, kA2W = TW + 2 * kHalo3;
  static constexpr int kN3 = kFusedMaxScale * kFusedMaxScale;
  // Pixel strides padded by 16 bytes so that the 8 rows of an ldmatrix (or a
  // warp's 8 pixels of one channel) fall in distinct banks.
  static constexpr int kC1S = kC1 + 16 / int(sizeof(Storage));
  static constexpr int kC2S = kC2 + 16 / int(sizeof(Storage));

  using L1 = StageShape<1, kK1, kC1, kInW, 1, kA1H, kA1W>;
  using L2 = StageShape<kC1, kK2, kC2, kA1W, kC1S, kA2H, kA2W>;
  using L3 = StageShape<kC2, kK3, kN3, kA2W, kC2S, TH, TW>;

  template <class S>
  static constexpr int weight_bytes() {
    if constexpr (P::kMma) {
      return MmaStage<P, S>::kFragments * 8;
    } else {
      return S::kTaps * S::kCin * S::kNPad * 4;
    }
  }

  static constexpr int kW1 = 0;
  static constexpr int kW2 = kW1 + align16(weight_bytes<L1>());
  static constexpr int kW3 = kW2 + align16(weight_bytes<L2>());
  static constexpr int kB1 = kW3 + align16(weight_bytes<L3>());
  static constexpr int kB2 = kB1 + align16(kC1 * 4);
  static constexpr int kB3 = kB2 + align16(kC2 * 4);
  static constexpr int kIn = kB3 + align16(kN3 * 4);
  static constexpr int kAct1 = kIn + align16(kInH * kInW * int(sizeof(Storage)));
  static constexpr int kAct2 = kAct1 + align16(kA1H * kA1W * kC1S * int(sizeof(Storage)));
  static constexpr int kBytes = kAct2 + align16(kA2H * kA2W * kC2S * int(sizeof(Storage)));
  // A tile's buffers (from kIn on): a block working GROUPS tiles at once has
  // GROUPS of them after one copy of the weights.
  static constexpr int kTileBytes = kBytes - kIn;
  static constexpr int bytes(int groups) { return kIn + groups * kTileBytes; }
  // The HR tile is staged over layer 1's buffer, free once layer 2 has run.
  static constexpr int kStage = kAct1;
  static_assert(TH * TW * kN3 * 4 <= kAct2 - kAct1, "the HR staging tile fits in layer 1's buffer");
};

template <class P>
constexpr int kWarpMTiles = sizeof(typename P::Storage) == 2 ? kFused16MTiles : kFused32MTiles;

template <class P, class S, int WARPS, class Epilogue>
__device__ __forceinline__ void run_stage(const typename P::Storage* in, const unsigned char* w, const float* bias,
                                          int cout, unsigned tid, Epilogue epilogue) {
  if constexpr (P::kMma) {
    mma_stage<P, S, kWarpMTiles<P>, WARPS>(in, reinterpret_cast<const uint2*>(w), bias, cout, tid, epilogue);
  } else {
    ffma_stage<S, kFfmaPixels, kFfmaChannels, WARPS>(in, reinterpret_cast<const float*>(w), bias, cout, tid, epilogue);
  }
}

template <class P, class S, class Given = P>
__device__ __forceinline__ void fill_weights(unsigned char* dst, const void* w, int cout) {
  if constexpr (P::kMma) {
    fill_mma_weights<P, S, Given>(reinterpret_cast<uint2*>(dst), w, cout);
  } else {
    fill_ffma_weights<S>(reinterpret_cast<float*>(dst), static_cast<const float*>(w), cout);
  }
}

// THREADS: the block size it is launched with (kFusedThreads); MIN_BLOCKS:
// blocks per SM the registers must leave room for (1); GROUPS: tiles the
// block works at once, each by THREADS / GROUPS threads with its own
// buffers and named barrier, sharing one copy of the weights (1; the tile
// sweep tries other values of all three).
template <class P, int TH, int TW, int THREADS = kFusedThreads, int MIN_BLOCKS = 1, int GROUPS = 1>
__global__ void __launch_bounds__(THREADS, MIN_BLOCKS) espcn_fused_kernel(EspcnArgs a) {
  constexpr int kGroupThreads = THREADS / GROUPS;
  static_assert(THREADS % GROUPS == 0 && kGroupThreads % 32 == 0 && GROUPS < 16, "whole warps per group");
  constexpr int kWarps = kGroupThreads / 32;
  using L = FusedLayout<P, TH, TW>;
  using Storage = typename P::Storage;
  using P1 = Layer1Precision<P>;
  static_assert(sizeof(typename P1::Storage) == sizeof(Storage), "the same shared-memory layout");
  ESPCN_DYNAMIC_SHARED_MEMORY(smem);
  // One group: blockDim.x strides (a constant stride made ptxas take 7 more registers).
  const int group = GROUPS == 1 ? 0 : int(threadIdx.x / kGroupThreads);
  const unsigned tid = GROUPS == 1 ? threadIdx.x : threadIdx.x % kGroupThreads;
  const int stride = GROUPS == 1 ? int(blockDim.x) : kGroupThreads;
  unsigned char* own = smem + group * L::kTileBytes;  // this group's tile buffers (offsets as for group 0)
  typename P1::Storage* s_in = reinterpret_cast<typename P1::Storage*>(own + L::kIn);
  Storage* s_act1 = reinterpret_cast<Storage*>(own + L::kAct1);
  Storage* s_act2 = reinterpret_cast<Storage*>(own + L::kAct2);
  float* s_stage = reinterpret_cast<float*>(own + L::kStage);
  // The barrier between a tile's stages: the block's, or the group's own.
  auto sync = [group] {
    if constexpr (GROUPS == 1) {
      __syncthreads();
    } else {
      named_barrier(1 + group, kGroupThreads);
    }
  };
  const float* s_b1 = reinterpret_cast<const float*>(smem + L::kB1);
  const float* s_b2 = reinterpret_cast<const float*>(smem + L::kB2);
  const float* s_b3 = reinterpret_cast<const float*>(smem + L::kB3);

  const int r = a.scale, rr = r * r;
  fill_weights<P1, typename L::L1, P>(smem + L::kW1, a.w1, kC1);
  fill_weights<P, typename L::L2>(smem + L::kW2, a.w2, kC2);
  fill_weights<P, typename L::L3>(smem + L::kW3, a.w3, rr);
  fill_bias<kC1>(reinterpret_cast<float*>(smem + L::kB1), a.b1, kC1);
  fill_bias<kC2>(reinterpret_cast<float*>(smem + L::kB2), a.b2, kC2);
  fill_bias<L::kN3>(reinterpret_cast<float*>(smem + L::kB3), a.b3, rr);
  if constexpr (GROUPS > 1) __syncthreads();  // the weights, filled by all, before any group's first tile

  constexpr TileShape shape{TH, TW};
  const TileGrid grid(a.h, a.w, shape);
  const int tiles = int(grid.count(a.n));
  const int64_t hr_h = int64_t(a.h) * r, hr_w = int64_t(a.w) * r;

  for (int tile = int(blockIdx.x) * GROUPS + group; tile < tiles; tile += int(gridDim.x) * GROUPS) {
    int image, y0, x0;
    grid.locate(tile, shape, &image, &y0, &x0);

    // The image region with its halo; zeros outside the image are layer 1's padding.
    for (int i = tid; i < L::kInH * L::kInW; i += stride) {
      const int ry = i / L::kInW, rx = i % L::kInW;
      float v = 0.f;
      if (region_in_image(ry, rx, kHalo, y0, x0, a.h, a.w)) {
        const int64_t at = (int64_t(image) * a.h + (y0 - kHalo + ry)) * a.w + (x0 - kHalo + rx);
        v = a.half_io ? __half2float(static_cast<const __half*>(a.x)[at]) : static_cast<const float*>(a.x)[at];
      }
      s_in[i] = P1::store(v);
    }
    sync();

    // Layers 1 and 2: tanh, and zero outside the image (the next layer's padding).
    run_stage<P1, typename L::L1, kWarps>(s_in, smem + L::kW1, s_b1, kC1, tid, [&](int m, int n, float v0, float v1) {
      const bool inside = region_in_image(m / L::kA1W, m % L::kA1W, kHalo2, y0, x0, a.h, a.w);
      store_pair<P>(s_act1 + m * L::kC1S + n, inside ? P::tanh(v0) : 0.f, inside ? P::tanh(v1) : 0.f);
    });
    sync();
    run_stage<P, typename L::L2, kWarps>(s_act1, smem + L::kW2, s_b2, kC2, tid, [&](int m, int n, float v0, float v1) {
      const bool inside = region_in_image(m / L::kA2W, m % L::kA2W, kHalo3, y0, x0, a.h, a.w);
      store_pair<P>(s_act2 + m * L::kC2S + n, inside ? P::tanh(v0) : 0.f, inside ? P::tanh(v1) : 0.f);
    });
    sync();

    // Layer 3 with the pixel shuffle into the staged HR tile (TH*r x TW*r).
    run_stage<P, typename L::L3, kWarps>(s_act2, smem + L::kW3, s_b3, rr, tid, [&](int m, int n, float v0, float v1) {
      const int ty = m / TW, tx = m % TW;
      const float v[2] = {v0, v1};
#pragma unroll
      for (int q = 0; q < 2; ++q) {
        const int c = n + q;
        if (c < rr) {
          const float out = a.clamp ? clamp_unit(v[q]) : v[q];
          s_stage[(ty * r + c / r) * (TW * r) + tx * r + c % r] = out;
        }
      }
    });
    sync();

    // HR rows out, consecutive threads on consecutive pixels. The next tile's
    // first barrier orders these reads before layer 1 overwrites the stage.
    const int stage_w = TW * r;
    for (int i = tid; i < TH * r * stage_w; i += stride) {
      const int64_t y = int64_t(y0) * r + i / stage_w, x = int64_t(x0) * r + i % stage_w;
      if (y < hr_h && x < hr_w) {
        const int64_t at = (int64_t(image) * hr_h + y) * hr_w + x;
        if (a.half_io) {
          static_cast<__half*>(a.out)[at] = __float2half_rn(s_stage[i]);
        } else {
          static_cast<float*>(a.out)[at] = s_stage[i];
        }
      }
    }
  }
}

}  // namespace espcn::cuda
