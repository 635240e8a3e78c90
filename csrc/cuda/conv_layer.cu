// The per-layer kernel's launcher: one block per 16x16 tile, channel group and image.
#include "conv_layer_kernel.cuh"
#include "kernels.h"

namespace espcn::cuda {

cudaError_t conv_layer(const ConvLayerArgs& a, cudaStream_t stream) {
  if (a.kernel < 1 || a.kernel > kLayerMaxKernel || a.kernel % 2 == 0) return cudaErrorInvalidValue;
  const int tiles_x = ceil_div(a.w, kLayerTile), tiles_y = ceil_div(a.h, kLayerTile);
  const int groups = ceil_div(a.out_channels, layer_channel_group(a.pixel_shuffle, a.scale));
  const int64_t blocks_x = int64_t(a.n) * groups * tiles_x;
  if (blocks_x == 0 || tiles_y == 0) return cudaSuccess;
  if (blocks_x > 0x7fffffff || tiles_y > 65535) return cudaErrorInvalidConfiguration;
  conv_layer_kernel<<<dim3(unsigned(blocks_x), unsigned(tiles_y)), kLayerThreads, kLayerSharedBytes, stream>>>(a, tiles_x, groups);
  return cudaGetLastError();
}

}  // namespace espcn::cuda
