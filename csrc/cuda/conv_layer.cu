// One "same"-padded convolution with its epilogue (tanh, or the pixel shuffle
// written straight to the HR layout), any channel counts and odd kernels up
// to kLayerMaxKernel, float32 arithmetic. A block computes a kLayerTile^2
// pixel tile for kLayerCo output channels; it walks the input channels
// kLayerChunk at a time, each chunk's tile (with halo) and weights staged in
// shared memory. Used for the per-layer path and for shapes the fused kernel
// is not compiled for.
#include <cuda_fp16.h>

#include <cstdint>

#include "../tile_geometry.h"
#include "kernels.h"

namespace espcn::cuda {
namespace {

constexpr int kThreads = kLayerTile * kLayerTile;
constexpr int kHaloTile = kLayerTile + kLayerMaxKernel - 1;

__device__ float load_x(const ConvLayerArgs& a, int64_t i) {
  return a.half_io ? __half2float(static_cast<const __half*>(a.x)[i]) : static_cast<const float*>(a.x)[i];
}

__device__ void store_out(const ConvLayerArgs& a, int64_t i, float v) {
  if (a.half_io) {
    static_cast<__half*>(a.out)[i] = __float2half_rn(v);
  } else {
    static_cast<float*>(a.out)[i] = v;
  }
}

__global__ void __launch_bounds__(kThreads, 2) conv_layer_kernel(ConvLayerArgs a, int tiles_x, int groups) {
  __shared__ float s_x[kLayerChunk][kHaloTile][kHaloTile];
  __shared__ __align__(16) float s_w[kLayerChunk][kLayerMaxKernel * kLayerMaxKernel][kLayerCo];
  // blockIdx.x = (image * groups + channel group) * tiles_x + tile column.
  const int tx_tile = blockIdx.x % tiles_x, group = (blockIdx.x / tiles_x) % groups;
  const int image = blockIdx.x / (tiles_x * groups);
  const int y0 = blockIdx.y * kLayerTile, x0 = tx_tile * kLayerTile, co0 = group * kLayerCo;
  const int k = a.kernel, pad = k / 2, span = kLayerTile + k - 1;
  const int ty = threadIdx.x / kLayerTile, tx = threadIdx.x % kLayerTile;

  float acc[kLayerCo];
#pragma unroll
  for (int j = 0; j < kLayerCo; ++j) acc[j] = co0 + j < a.out_channels ? a.bias[co0 + j] : 0.f;

  for (int ci0 = 0; ci0 < a.in_channels; ci0 += kLayerChunk) {
    for (int i = threadIdx.x; i < kLayerChunk * span * span; i += kThreads) {
      const int c = i / (span * span), yy = (i / span) % span, xx = i % span;
      const int y = y0 - pad + yy, x = x0 - pad + xx, ci = ci0 + c;
      float v = 0.f;
      if (ci < a.in_channels && y >= 0 && y < a.h && x >= 0 && x < a.w)
        v = load_x(a, ((int64_t(image) * a.in_channels + ci) * a.h + y) * a.w + x);
      s_x[c][yy][xx] = v;
    }
    for (int i = threadIdx.x; i < kLayerChunk * k * k * kLayerCo; i += kThreads) {
      const int j = i % kLayerCo, tap = (i / kLayerCo) % (k * k), c = i / (kLayerCo * k * k);
      const int ci = ci0 + c, co = co0 + j;
      s_w[c][tap][j] = ci < a.in_channels && co < a.out_channels
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
  if (y >= a.h || x >= a.w) return;
#pragma unroll
  for (int j = 0; j < kLayerCo; ++j) {
    const int co = co0 + j;
    if (co >= a.out_channels) continue;
    if (a.pixel_shuffle) {
      const float v = a.clamp ? fminf(fmaxf(acc[j], 0.f), 1.f) : acc[j];
      store_out(a, pixel_shuffle_offset(image, co, y, x, a.scale, a.out_channels / (a.scale * a.scale), a.h, a.w), v);
    } else {
      store_out(a, ((int64_t(image) * a.out_channels + co) * a.h + y) * a.w + x, tanhf(acc[j]));
    }
  }
}

}  // namespace

cudaError_t conv_layer(const ConvLayerArgs& a, cudaStream_t stream) {
  if (a.kernel < 1 || a.kernel > kLayerMaxKernel || a.kernel % 2 == 0) return cudaErrorInvalidValue;
  const int tiles_x = ceil_div(a.w, kLayerTile), tiles_y = ceil_div(a.h, kLayerTile);
  const int groups = ceil_div(a.out_channels, kLayerCo);
  const int64_t blocks_x = int64_t(a.n) * groups * tiles_x;
  if (blocks_x == 0 || tiles_y == 0) return cudaSuccess;
  if (blocks_x > 0x7fffffff || tiles_y > 65535) return cudaErrorInvalidConfiguration;
  conv_layer_kernel<<<dim3(unsigned(blocks_x), unsigned(tiles_y)), kThreads, 0, stream>>>(a, tiles_x, groups);
  return cudaGetLastError();
}

}  // namespace espcn::cuda
