// One "same"-padded convolution with its epilogue (tanh, or the pixel shuffle
// written straight to the HR layout), any channel counts and odd kernels up
// to kLayerMaxKernel, float32 arithmetic. A block computes a kLayerTile^2
// pixel tile for kLayerCo output channels; it walks the input channels
// kLayerChunk at a time, each chunk's tile (with halo) and weights staged in
// shared memory. The launcher is conv_layer.cu; this header holds no launch
// syntax, so the CPU emulator (tests/cpp) compiles it too.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "../tile_geometry.h"
#include "kernels.h"
#include "ptx.cuh"

namespace espcn::cuda {


constexpr int kLayerThreads = kLayerTile * kLayerTile;
constexpr int kHaloTile = kLayerTile + kLayerMaxKernel - 1;
// Dynamic shared memory: the chunk's weights (16-byte aligned for float4 reads), then its input tile.
constexpr int kLayerWeightBytes = kLayerChunk * kLayerMaxKernel * kLayerMaxKernel * kLayerCo * 4;
constexpr int kLayerSharedBytes = kLayerWeightBytes + kLayerChunk * kHaloTile * kHaloTile * 4;

__device__ inline float load_x(const ConvLayerArgs& a, int64_t i) {
  return a.half_io ? __half2float(static_cast<const __half*>(a.x)[i]) : static_cast<const float*>(a.x)[i];
}

__device__ inline void store_out(const ConvLayerArgs& a, int64_t i, float v) {
  if (a.half_io) {
    static_cast<__half*>(a.out)[i] = __float2half_rn(v);
  } else {
    static_cast<float*>(a.out)[i] = v;
  }
}

// HR tile staging for the pixel shuffle: kLayerCo channels of kLayerTile^2 floats, over the weights' space.
static_assert(kLayerCo * kLayerTile * kLayerTile * 4 <= kLayerSharedBytes, "the staged HR tile fits");

__global__ inline void __launch_bounds__(kLayerThreads, 2) conv_layer_kernel(ConvLayerArgs a, int tiles_x, int groups) {
  ESPCN_DYNAMIC_SHARED_MEMORY(smem);
  auto& s_w = *reinterpret_cast<float(*)[kLayerChunk][kLayerMaxKernel * kLayerMaxKernel][kLayerCo]>(smem);
  auto& s_x = *reinterpret_cast<float(*)[kLayerChunk][kHaloTile][kHaloTile]>(smem + kLayerWeightBytes);
  // blockIdx.x = (image * groups + channel group) * tiles_x + tile column.
  const int tx_tile = blockIdx.x % tiles_x, group = (blockIdx.x / tiles_x) % groups;
  const int image = blockIdx.x / (tiles_x * groups);
  const int group_size = layer_channel_group(a.pixel_shuffle, a.scale);
  const int y0 = blockIdx.y * kLayerTile, x0 = tx_tile * kLayerTile, co0 = group * group_size;
  const int k = a.kernel, pad = k / 2, span = kLayerTile + k - 1;
  const int ty = threadIdx.x / kLayerTile, tx = threadIdx.x % kLayerTile;

  float acc[kLayerCo];
#pragma unroll
  for (int j = 0; j < kLayerCo; ++j) acc[j] = j < group_size && co0 + j < a.out_channels ? a.bias[co0 + j] : 0.f;

  for (int ci0 = 0; ci0 < a.in_channels; ci0 += kLayerChunk) {
    for (int i = threadIdx.x; i < kLayerChunk * span * span; i += kLayerThreads) {
      const int c = i / (span * span), yy = (i / span) % span, xx = i % span;
      const int y = y0 - pad + yy, x = x0 - pad + xx, ci = ci0 + c;
      float v = 0.f;
      if (ci < a.in_channels && y >= 0 && y < a.h && x >= 0 && x < a.w)
        v = load_x(a, ((int64_t(image) * a.in_channels + ci) * a.h + y) * a.w + x);
      s_x[c][yy][xx] = v;
    }
    for (int i = threadIdx.x; i < kLayerChunk * k * k * kLayerCo; i += kLayerThreads) {
      const int j = i % kLayerCo, tap = (i / kLayerCo) % (k * k), c = i / (kLayerCo * k * k);
      const int ci = ci0 + c, co = co0 + j;
      s_w[c][tap][j] = ci < a.in_channels && j < group_size && co < a.out_channels
                           ? a.weight[(int64_t(co) * a.in_channels + ci) * k * k + tap]
                           : 0.f;
    }
    __syncthreads();
    for (int c = 0; c < kLayerChunk; ++c) {
      for (int ky = 0; ky < k; ++ky) {
        for (int kx = 0; kx < k; ++kx) {
          const float v = s_x[c][ty + ky][tx + kx];
          const float4* w4 = reinterpret_cast<const float4*>(s_w[c][ky * k + kx]);
#pragma unroll
          for (int q = 0; q < kLayerCo / 4; ++q) {
            const float4 w = w4[q];
            acc[4 * q + 0] = fmaf(v, w.x, acc[4 * q + 0]);
            acc[4 * q + 1] = fmaf(v, w.y, acc[4 * q + 1]);
            acc[4 * q + 2] = fmaf(v, w.z, acc[4 * q + 2]);
            acc[4 * q + 3] = fmaf(v, w.w, acc[4 * q + 3]);
          }
        }
      }
    }
    __syncthreads();
  }

  const int y = y0 + ty, x = x0 + tx;
  const int rr = a.scale * a.scale;
  if (a.pixel_shuffle && group_size % rr == 0) {
    // Stage the block's LR outputs, then write whole HR rows of its
    // group_size / r^2 HR channels: consecutive threads, consecutive pixels.
    float* stage = reinterpret_cast<float*>(smem);
#pragma unroll
    for (int j = 0; j < kLayerCo; ++j)
      stage[(j * kLayerTile + ty) * kLayerTile + tx] = a.clamp ? clamp_unit(acc[j]) : acc[j];
    __syncthreads();
    const int r = a.scale, tile_hr = kLayerTile * r, hr_h = a.h * r, hr_w = a.w * r;
    const int out_channels = a.out_channels / rr;
    for (int e = threadIdx.x; e < (group_size / rr) * tile_hr * tile_hr; e += kLayerThreads) {
      const int hc = e / (tile_hr * tile_hr), hy = (e / tile_hr) % tile_hr, hx = e % tile_hr;
      const int c = co0 / rr + hc, gy = y0 * r + hy, gx = x0 * r + hx;
      if (c >= out_channels || gy >= hr_h || gx >= hr_w) continue;
      const int j = hc * rr + (hy % r) * r + hx % r;
      store_out(a, ((int64_t(image) * out_channels + c) * hr_h + gy) * hr_w + gx,
                stage[(j * kLayerTile + hy / r) * kLayerTile + hx / r]);
    }
    return;
  }
  if (y >= a.h || x >= a.w) return;
#pragma unroll
  for (int j = 0; j < kLayerCo; ++j) {
    const int co = co0 + j;
    if (j >= group_size || co >= a.out_channels) continue;
    if (a.pixel_shuffle) {
      const float v = a.clamp ? clamp_unit(acc[j]) : acc[j];
      store_out(a, pixel_shuffle_offset(image, co, y, x, a.scale, a.out_channels / (a.scale * a.scale), a.h, a.w), v);
    } else {
      store_out(a, ((int64_t(image) * a.out_channels + co) * a.h + y) * a.w + x, tanhf(acc[j]));
    }
  }
}

}  // namespace espcn::cuda
