// One layer of the fused kernel over a tile held in shared memory, as an
// implicit GEMM: M = the pixels of the layer's output region, N = output
// channels, K = in_channels * k * k in tap-major order (k = tap * CIN + ci).
// mma_stage runs it on the tensor cores, ffma_stage on the CUDA cores. Both
// hand each output pair (pixel m, channels n and n+1, n even) to the caller's
// epilogue exactly once.
//
// Layouts: the input region is (OUT_H + K - 1) x IN_W pixels, channels last
// with a pixel stride of IN_CS elements (IN_CS = 1 for the one-channel
// image); output pixel m = (m / OUT_W, m % OUT_W) reads input pixel
// (y + ky) * IN_W + (x + kx).
#pragma once

#include "../tile_geometry.h"
#include "precision.cuh"

namespace espcn::cuda {

template <int CIN, int KSIZE, int NPAD, int IN_W, int IN_CS, int OUT_H, int OUT_W>
struct StageShape {
  static constexpr int kCin = CIN, kKsize = KSIZE, kTaps = KSIZE * KSIZE, kNPad = NPAD;
  static constexpr int kInW = IN_W, kInCs = IN_CS;
  static constexpr int kOutH = OUT_H, kOutW = OUT_W, kM = OUT_H * OUT_W;
  static constexpr int kK = CIN * KSIZE * KSIZE;
  static_assert(IN_W == OUT_W + KSIZE - 1, "the input region is the output region plus the kernel's halo");
  static_assert(CIN == 1 || IN_CS >= CIN, "pixel stride below the channel count");
  static_assert(NPAD % 8 == 0, "N is padded to whole 8-channel MMA blocks");

  // Input pixel index of output pixel m's (0, 0) tap.
  __device__ static int input_pixel(int m) { return (m / OUT_W) * IN_W + m % OUT_W; }
};

template <class P, class S>
struct MmaStage {
  static constexpr int kSteps = (S::kK + P::kK - 1) / P::kK;
  static constexpr int kNBlocks = S::kNPad / 8;
  static constexpr int kFragments = kSteps * kNBlocks * 32;  // uint2 each
  static_assert(S::kCin == 1 || S::kCin % P::kK == 0, "a K step never straddles two taps");
};

// Weights (out, in, k, k) in Given's dtype -> B fragments of P in shared
// memory, in the order the MMA loop reads them: [k step][n block][lane] of
// uint2 {b0, b1}.
template <class P, class S, class Given = P>
__device__ void fill_mma_weights(uint2* frag, const void* w, int cout) {
  using M = MmaStage<P, S>;
  for (int i = threadIdx.x; i < M::kFragments; i += blockDim.x) {
    const int lane = i & 31, nb = (i >> 5) % M::kNBlocks, ks = (i >> 5) / M::kNBlocks;
    const int g = lane >> 2, t = lane & 3, n = nb * 8 + g;
    auto bits = [&](int k) -> uint32_t {
      float v = 0.f;
      if (n < cout && k < S::kK) {
        const int tap = S::kCin == 1 ? k : k / S::kCin, ci = S::kCin == 1 ? 0 : k % S::kCin;
        v = weight_value<Given>(w, ((n * S::kCin + ci) * S::kKsize + tap / S::kKsize) * S::kKsize + tap % S::kKsize);
      }
      return bits_of<P>(P::store(v));
    };
    uint2 b;
    if constexpr (P::kK == 16) {
      const int k0 = ks * 16 + 2 * t;
      b.x = bits(k0) | (bits(k0 + 1) << 16);
      b.y = bits(k0 + 8) | (bits(k0 + 9) << 16);
    } else {
      const int k0 = ks * 8 + t;
      b.x = bits(k0);
      b.y = bits(k0 + 4);
    }
    frag[i] = b;
  }
}

// Weights (out, in, k, k) float32 -> [tap][ci][co padded to NPAD] for FFMA.
template <class S>
__device__ void fill_ffma_weights(float* dst, const float* w, int cout) {
  for (int i = threadIdx.x; i < S::kTaps * S::kCin * S::kNPad; i += blockDim.x) {
    const int co = i % S::kNPad, ci = (i / S::kNPad) % S::kCin, tap = i / (S::kNPad * S::kCin);
    dst[i] = co < cout ? w[((co * S::kCin + ci) * S::kKsize + tap / S::kKsize) * S::kKsize + tap % S::kKsize] : 0.f;
  }
}

// Biases padded with zeros to NPAD.
template <int NPAD>
__device__ void fill_bias(float* dst, const float* b, int cout) {
  for (int i = threadIdx.x; i < NPAD; i += blockDim.x) dst[i] = i < cout ? b[i] : 0.f;
}

// The tensor-core stage, run by WARPS warps (the block's, or a group's; tid:
// the thread's index among them). Each warp takes MT m16 tiles at a time with all N:
// per K step it loads MT A fragments (ldmatrix for 16-bit channels-last
// input, gathers for the one-channel image and for tf32) and NB B fragments,
// then issues MT * NB mma.sync.
template <class P, class S, int MT, int WARPS, class Epilogue>
__device__ void mma_stage(const typename P::Storage* in, const uint2* frag, const float* bias, int cout, unsigned tid,
                          Epilogue epilogue) {
  using M = MmaStage<P, S>;
  using Bits = typename P::Bits;
  constexpr int kMTiles = (S::kM + 15) / 16, kUnits = (kMTiles + MT - 1) / MT;
  const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const Bits* in_bits = reinterpret_cast<const Bits*>(in);
  // Direct loads (one-channel image, tf32) need rows g and g+8 of each tile;
  // ldmatrix needs row lane % 16 at k half lane / 16. Rows past M read the
  // last pixel; their results are never stored.
  constexpr bool kLdmatrix = S::kCin > 1 && P::kK == 16;

  for (int unit = warp; unit < kUnits; unit += WARPS) {
    float acc[MT][M::kNBlocks][4];
#pragma unroll
    for (int nb = 0; nb < M::kNBlocks; ++nb) {
      const float b0 = bias[nb * 8 + 2 * t], b1 = bias[nb * 8 + 2 * t + 1];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        acc[mt][nb][0] = b0;
        acc[mt][nb][1] = b1;
        acc[mt][nb][2] = b0;
        acc[mt][nb][3] = b1;
      }
    }
    int row_lo[MT], row_hi[MT];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      const int m0 = (unit * MT + mt) * 16;
      if constexpr (kLdmatrix) {
        row_lo[mt] = S::input_pixel(min(m0 + (lane & 15), S::kM - 1)) * S::kInCs + (lane >> 4) * 8;
        row_hi[mt] = 0;
      } else {
        row_lo[mt] = S::input_pixel(min(m0 + g, S::kM - 1)) * S::kInCs;
        row_hi[mt] = S::input_pixel(min(m0 + g + 8, S::kM - 1)) * S::kInCs;
      }
    }

#pragma unroll(S::kCin == 1 ? M::kSteps : 2)
    for (int ks = 0; ks < M::kSteps; ++ks) {
      uint32_t a[MT][4];
      if constexpr (S::kCin == 1) {
        // im2col of the one-channel image: K index = tap; taps past k*k are 0.
        auto gather = [&](int row, int k) -> uint32_t {
          return k < S::kTaps ? uint32_t(in_bits[row + (k / S::kKsize) * S::kInW + k % S::kKsize]) : 0u;
        };
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          if constexpr (P::kK == 16) {
            const int k0 = ks * 16 + 2 * t;
            a[mt][0] = gather(row_lo[mt], k0) | (gather(row_lo[mt], k0 + 1) << 16);
            a[mt][1] = gather(row_hi[mt], k0) | (gather(row_hi[mt], k0 + 1) << 16);
            a[mt][2] = gather(row_lo[mt], k0 + 8) | (gather(row_lo[mt], k0 + 9) << 16);
            a[mt][3] = gather(row_hi[mt], k0 + 8) | (gather(row_hi[mt], k0 + 9) << 16);
          } else {
            const int k0 = ks * 8 + t;
            a[mt][0] = gather(row_lo[mt], k0);
            a[mt][1] = gather(row_hi[mt], k0);
            a[mt][2] = gather(row_lo[mt], k0 + 4);
            a[mt][3] = gather(row_hi[mt], k0 + 4);
          }
        }
      } else {
        const int k = ks * P::kK, tap = k / S::kCin, c0 = k % S::kCin;
        const int offset = ((tap / S::kKsize) * S::kInW + tap % S::kKsize) * S::kInCs + c0;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          if constexpr (kLdmatrix) {
            ldmatrix_x4(a[mt], in + row_lo[mt] + offset);
          } else {
            a[mt][0] = in_bits[row_lo[mt] + offset + t];
            a[mt][1] = in_bits[row_hi[mt] + offset + t];
            a[mt][2] = in_bits[row_lo[mt] + offset + t + 4];
            a[mt][3] = in_bits[row_hi[mt] + offset + t + 4];
          }
        }
      }
#pragma unroll
      for (int nb = 0; nb < M::kNBlocks; ++nb) {
        if (nb * 8 >= cout) break;  // layer 3 at r = 2: half of its padded N is empty
        const uint2 b = frag[(ks * M::kNBlocks + nb) * 32 + lane];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) P::mma(acc[mt][nb], a[mt], b);
      }
    }

#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      const int m = (unit * MT + mt) * 16 + g;
#pragma unroll
      for (int nb = 0; nb < M::kNBlocks; ++nb) {
        const int n = nb * 8 + 2 * t;
        if (m < S::kM) epilogue(m, n, acc[mt][nb][0], acc[mt][nb][1]);
        if (m + 8 < S::kM) epilogue(m + 8, n, acc[mt][nb][2], acc[mt][nb][3]);
      }
    }
  }
}

// The CUDA-core stage: lane l of a warp computes pixels m = base + l + 32p
// (p < PX) for CO channels; weights are read as broadcast float4s from the
// [tap][ci][co] layout, activations as float4s of 4 channels (a warp's
// consecutive pixels sit in distinct banks thanks to the padded stride).
template <class S, int PX, int CO, int WARPS, class Epilogue>
__device__ void ffma_stage(const float* in, const float* w, const float* bias, int cout, unsigned tid,
                           Epilogue epilogue) {
  static_assert(CO % 4 == 0 && S::kNPad % CO == 0, "whole float4 channel groups");
  static_assert(S::kCin == 1 || (S::kCin % 4 == 0 && S::kInCs % 4 == 0), "float4 activation loads");
  constexpr int kPixels = 32 * PX, kPixelUnits = (S::kM + kPixels - 1) / kPixels;
  constexpr int kGroups = S::kNPad / CO, kUnits = kPixelUnits * kGroups;
  const int warp = tid >> 5, lane = tid & 31;

  for (int unit = warp; unit < kUnits; unit += WARPS) {
    const int co0 = (unit % kGroups) * CO, m0 = (unit / kGroups) * kPixels + lane;
    if (co0 >= cout) continue;
    int base[PX];
#pragma unroll
    for (int p = 0; p < PX; ++p) base[p] = S::input_pixel(min(m0 + 32 * p, S::kM - 1)) * S::kInCs;
    float acc[PX][CO];
#pragma unroll
    for (int j = 0; j < CO; ++j) {
#pragma unroll
      for (int p = 0; p < PX; ++p) acc[p][j] = bias[co0 + j];
    }

    for (int tap = 0; tap < S::kTaps; ++tap) {
      const int offset = ((tap / S::kKsize) * S::kInW + tap % S::kKsize) * S::kInCs;
      if constexpr (S::kCin == 1) {
        const float4* wv = reinterpret_cast<const float4*>(w + tap * S::kNPad + co0);
        float v[PX];
#pragma unroll
        for (int p = 0; p < PX; ++p) v[p] = in[base[p] + offset];
#pragma unroll
        for (int q = 0; q < CO / 4; ++q) {
          const float4 w4 = wv[q];
#pragma unroll
          for (int p = 0; p < PX; ++p) {
            acc[p][4 * q + 0] = fmaf(v[p], w4.x, acc[p][4 * q + 0]);
            acc[p][4 * q + 1] = fmaf(v[p], w4.y, acc[p][4 * q + 1]);
            acc[p][4 * q + 2] = fmaf(v[p], w4.z, acc[p][4 * q + 2]);
            acc[p][4 * q + 3] = fmaf(v[p], w4.w, acc[p][4 * q + 3]);
          }
        }
      } else {
#pragma unroll 2
        for (int ci = 0; ci < S::kCin; ci += 4) {
          float4 v[PX];
#pragma unroll
          for (int p = 0; p < PX; ++p) v[p] = *reinterpret_cast<const float4*>(in + base[p] + offset + ci);
#pragma unroll
          for (int c = 0; c < 4; ++c) {
            const float4* wv = reinterpret_cast<const float4*>(w + (tap * S::kCin + ci + c) * S::kNPad + co0);
#pragma unroll
            for (int q = 0; q < CO / 4; ++q) {
              const float4 w4 = wv[q];
#pragma unroll
              for (int p = 0; p < PX; ++p) {
                const float x = c == 0 ? v[p].x : c == 1 ? v[p].y : c == 2 ? v[p].z : v[p].w;
                acc[p][4 * q + 0] = fmaf(x, w4.x, acc[p][4 * q + 0]);
                acc[p][4 * q + 1] = fmaf(x, w4.y, acc[p][4 * q + 1]);
                acc[p][4 * q + 2] = fmaf(x, w4.z, acc[p][4 * q + 2]);
                acc[p][4 * q + 3] = fmaf(x, w4.w, acc[p][4 * q + 3]);
              }
            }
          }
        }
      }
    }

#pragma unroll
    for (int p = 0; p < PX; ++p) {
      const int m = m0 + 32 * p;
      if (m >= S::kM) continue;
#pragma unroll
      for (int j = 0; j < CO; j += 2) epilogue(m, co0 + j, acc[p][j], acc[p][j + 1]);
    }
  }
}

}  // namespace espcn::cuda
