// The Hopper kernel's entry points (espcn_hopper.cu, built for sm_90a only
// when setup.py defines ESPCN_WITH_HOPPER), and which calls it takes.
#pragma once

#include <cstdint>

#include "../tile_geometry.h"
#include "kernels.h"

namespace espcn::cuda {

// fp16 or bf16, and an image a tensor map can describe: its start 16-byte
// aligned (a tensor in a storage at an odd offset may not be) and its rows a
// multiple of 16 bytes. Otherwise the 14x30 kernel runs.
inline bool hopper_takes(const EspcnArgs& a) {
  const bool sixteen = a.precision == Precision::kFp16 || a.precision == Precision::kBf16;
  const int64_t row_bytes = int64_t(a.w) * (a.half_io ? 2 : 4);
  const bool aligned = reinterpret_cast<uintptr_t>(a.x) % 16 == 0;
  return sixteen && aligned && row_bytes % 16 == 0 && a.scale >= 1 && a.scale <= kFusedMaxScale;
}

// Whether the current device runs the sm_90a kernel (compute capability 9.0,
// its binary loads, and the driver encodes tensor maps). Cached per device.
bool hopper_available();

cudaError_t launch_hopper(const EspcnArgs& a, cudaStream_t stream);

// A variant for the tile sweep: its launcher, kernel (for its attributes),
// block bytes and threads; step_rows 1 or 2 (rows a layer computes per step).
struct HopperVariant {
  cudaError_t (*launch)(const EspcnArgs&, cudaStream_t);
  const void* kernel;
  int bytes, threads;
};
HopperVariant hopper_variant(Precision precision, int step_rows);

}  // namespace espcn::cuda
