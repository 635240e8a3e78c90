// The fused kernel in fp16: its instantiations live in their own file so
// that the four precisions compile in parallel.
#include "espcn_fused.cuh"

namespace espcn::cuda {

cudaError_t launch_fused_fp16(const EspcnArgs& a, cudaStream_t stream) {
  return launch_fitting<Fp16, kFused16Tiles>(a, stream);
}

int fused_bytes_fp16() { return smallest_fused_bytes<Fp16, kFused16Tiles>(); }

}  // namespace espcn::cuda
