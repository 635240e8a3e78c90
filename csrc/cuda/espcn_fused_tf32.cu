// The fused kernel in tf32: its instantiations live in their own file so
// that the four precisions compile in parallel.
#include "espcn_fused.cuh"

namespace espcn::cuda {

cudaError_t launch_fused_tf32(const EspcnArgs& a, cudaStream_t stream) {
  return launch_fitting<Tf32, kFused32Tiles>(a, stream);
}

int fused_bytes_tf32() { return smallest_fused_bytes<Tf32, kFused32Tiles>(); }

}  // namespace espcn::cuda
