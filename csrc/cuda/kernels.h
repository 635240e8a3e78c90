// The CUDA kernels' plain C++ interface: device pointers, sizes and a stream.
// No torch headers; ops_cuda.cpp checks the tensors and converts them to these.
#pragma once

#include <cuda_runtime.h>

#include "../precision.h"

namespace espcn::cuda {

using espcn::Precision;

// One "same"-padded convolution, float32 weights and arithmetic, then tanh or
// the pixel shuffle (optionally clamped to [0, 1]).
struct ConvLayerArgs {
  const void* x;  // (n, in_channels, h, w)
  const float* weight;  // (out_channels, in_channels, kernel, kernel)
  const float* bias;
  void* out;  // (n, out_channels, h, w), or (n, out_channels / r^2, h*r, w*r)
  bool half_io;  // x and out are float16, else float32
  int n, in_channels, out_channels, h, w, kernel;
  bool pixel_shuffle;
  int scale;
  bool clamp;
};

cudaError_t conv_layer(const ConvLayerArgs& a, cudaStream_t stream);

// The whole network in one launch, for the shape in tile_geometry.h
// (1 -> 64 -> 32 -> scale^2, kernels 5, 3, 3, scale <= kFusedMaxScale).
struct EspcnArgs {
  const void* x;  // (n, 1, h, w)
  // Weights in (out, in, k, k) order: float32 for fp32 and tf32, float16 for
  // fp16, bfloat16 for bf16. Biases float32.
  const void* w1;
  const float* b1;
  const void* w2;
  const float* b2;
  const void* w3;
  const float* b3;
  void* out;  // (n, 1, h*scale, w*scale)
  bool half_io;
  int n, h, w, scale;
  bool clamp;
  Precision precision;
};

// Whether the fused kernel can run `precision` on the current device (one of
// its tile shapes fits the device's shared memory, compute capability >= 8.0).
bool espcn_fused_supported(Precision precision);

cudaError_t espcn_fused(const EspcnArgs& a, cudaStream_t stream);

}  // namespace espcn::cuda
