// The fused kernel's launcher: a persistent grid sized to the device, the
// tile shape that fits its shared memory, and the per-precision entry points
// (one .cu file each, so that they compile in parallel).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "espcn_fused_kernel.cuh"
#include "kernels.h"

namespace espcn::cuda {

// Devices whose facts are cached (a device number beyond it reports no support).
constexpr int kMaxDevices = 64;

// Per-device facts the launcher needs, read once per device.
struct DeviceInfo {
  int major = 0, sms = 0, smem_optin = 0;
};
DeviceInfo device_info();

// Launches the fused kernel with tile shape TH x TW and blocks of THREADS
// (registers capped for MIN_BLOCKS per SM): a persistent grid of as many
// blocks as fit on the device at once (never more than there are tiles).
template <class P, int TH, int TW, int THREADS = kFusedThreads, int MIN_BLOCKS = 1>
cudaError_t launch_fused(const EspcnArgs& a, cudaStream_t stream) {
  using L = FusedLayout<P, TH, TW>;
  auto kernel = espcn_fused_kernel<P, TH, TW, THREADS, MIN_BLOCKS>;
  // Once per device: raise the dynamic shared-memory limit and ask how many
  // blocks fit per SM. Doing it on the first call (before any graph capture
  // replays it) keeps the launch itself free of non-stream API calls.
  // Atomic: host threads may launch concurrently (a second fill is harmless).
  static std::atomic<int> blocks_per_sm[kMaxDevices];  // static storage: zeros
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  if (device < 0 || device >= kMaxDevices) return cudaErrorInvalidDevice;
  if (blocks_per_sm[device].load(std::memory_order_acquire) == 0) {
    err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, L::kBytes);
    if (err != cudaSuccess) return err;
    int per_sm = 0;
    err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, THREADS, L::kBytes);
    if (err != cudaSuccess) return err;
    if (per_sm < 1) return cudaErrorInvalidConfiguration;
    blocks_per_sm[device].store(per_sm, std::memory_order_release);
  }
  const int per_sm = blocks_per_sm[device].load(std::memory_order_acquire);
  const int64_t tiles = TileGrid(a.h, a.w, TileShape{TH, TW}).count(a.n);
  if (tiles == 0) return cudaSuccess;
  const int64_t blocks = std::min<int64_t>(tiles, int64_t(per_sm) * device_info().sms);
  kernel<<<unsigned(blocks), THREADS, L::kBytes, stream>>>(a);
  return cudaGetLastError();
}

// Launches the largest of the two tile shapes that fits the device.
template <class P, const TileShape (&kShapes)[2]>
cudaError_t launch_fitting(const EspcnArgs& a, cudaStream_t stream) {
  const int limit = device_info().smem_optin;
  if (FusedLayout<P, kShapes[0].rows, kShapes[0].cols>::kBytes <= limit)
    return launch_fused<P, kShapes[0].rows, kShapes[0].cols>(a, stream);
  if (FusedLayout<P, kShapes[1].rows, kShapes[1].cols>::kBytes <= limit)
    return launch_fused<P, kShapes[1].rows, kShapes[1].cols>(a, stream);
  return cudaErrorInvalidConfiguration;
}

template <class P, const TileShape (&kShapes)[2]>
int smallest_fused_bytes() {
  return FusedLayout<P, kShapes[1].rows, kShapes[1].cols>::kBytes;
}

// One per precision, defined in espcn_fused_<precision>.cu.
cudaError_t launch_fused_fp32(const EspcnArgs& a, cudaStream_t stream);
cudaError_t launch_fused_tf32(const EspcnArgs& a, cudaStream_t stream);
cudaError_t launch_fused_fp16(const EspcnArgs& a, cudaStream_t stream);
cudaError_t launch_fused_bf16(const EspcnArgs& a, cudaStream_t stream);
int fused_bytes_fp32();
int fused_bytes_tf32();
int fused_bytes_fp16();
int fused_bytes_bf16();

}  // namespace espcn::cuda
