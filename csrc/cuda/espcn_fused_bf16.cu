// The fused kernel in bf16: its instantiations live in their own file so
// that the four precisions compile in parallel.
#include "espcn_fused.cuh"

namespace espcn::cuda {

cudaError_t launch_fused_bf16(const EspcnArgs& a, cudaStream_t stream) {
  return launch_fitting<Bf16, kFused16Tiles>(a, stream);
}

int fused_bytes_bf16() { return smallest_fused_bytes<Bf16, kFused16Tiles>(); }

}  // namespace espcn::cuda
