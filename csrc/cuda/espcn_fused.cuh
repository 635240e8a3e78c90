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

// How many blocks of the fused kernel (tile TH x TW, blocks of THREADS,
// registers capped for MIN_BLOCKS per SM, GROUPS tiles at once) the current device holds at once,
// per SM. Once per device it raises the kernel's dynamic shared-memory limit
// and asks: doing that on the first call (before any graph capture replays
// it) keeps the launch itself free of non-stream API calls. Atomic: host
// threads may launch concurrently (a second fill is harmless).
template <class P, int TH, int TW, int THREADS = kFusedThreads, int MIN_BLOCKS = 1, int GROUPS = 1>
cudaError_t fused_blocks_per_sm(int* per_sm) {
  constexpr int kBytes = FusedLayout<P, TH, TW>::bytes(GROUPS);
  auto kernel = espcn_fused_kernel<P, TH, TW, THREADS, MIN_BLOCKS, GROUPS>;
  static std::atomic<int> cached[kMaxDevices];  // static storage: zeros
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  if (device < 0 || device >= kMaxDevices) return cudaErrorInvalidDevice;
  if (cached[device].load(std::memory_order_acquire) == 0) {
    err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kBytes);
    if (err != cudaSuccess) return err;
    int n = 0;
    err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, THREADS, kBytes);
    if (err != cudaSuccess) return err;
    if (n < 1) return cudaErrorInvalidConfiguration;
    cached[device].store(n, std::memory_order_release);
  }
  *per_sm = cached[device].load(std::memory_order_acquire);
  return cudaSuccess;
}

// Launches the fused kernel with tile shape TH x TW and blocks of THREADS
// (registers capped for MIN_BLOCKS per SM, GROUPS tiles at once): a
// persistent grid of as many blocks as fit on the device at once (never more
// than the tiles need).
template <class P, int TH, int TW, int THREADS = kFusedThreads, int MIN_BLOCKS = 1, int GROUPS = 1>
cudaError_t launch_fused(const EspcnArgs& a, cudaStream_t stream) {
  int per_sm = 0;
  cudaError_t err = fused_blocks_per_sm<P, TH, TW, THREADS, MIN_BLOCKS, GROUPS>(&per_sm);
  if (err != cudaSuccess) return err;
  const int64_t tiles = TileGrid(a.h, a.w, TileShape{TH, TW}).count(a.n);
  if (tiles == 0) return cudaSuccess;
  const int64_t blocks = std::min<int64_t>((tiles + GROUPS - 1) / GROUPS, int64_t(per_sm) * device_info().sms);
  espcn_fused_kernel<P, TH, TW, THREADS, MIN_BLOCKS, GROUPS>
      <<<unsigned(blocks), THREADS, FusedLayout<P, TH, TW>::bytes(GROUPS), stream>>>(a);
  return cudaGetLastError();
}

// Launches kT.first where it fits the device's shared memory, or kT.alternate
// instead when it fits too and prefer_alternate says it fills the last round
// of blocks better for this batch; else kT.small.
template <class P, const FusedTiles& kT>
cudaError_t launch_fitting(const EspcnArgs& a, cudaStream_t stream) {
  constexpr TileShape first = kT.first, alt = kT.alternate, small = kT.small;
  const DeviceInfo info = device_info();
  if (FusedLayout<P, first.rows, first.cols>::kBytes <= info.smem_optin) {
    if constexpr (alt.rows != first.rows || alt.cols != first.cols) {
      if (FusedLayout<P, alt.rows, alt.cols>::kBytes <= info.smem_optin) {
        // The alternate is an optimisation: if either query fails, the first
        // shape runs (its own launch reports its own errors).
        int first_per_sm = 0, alt_per_sm = 0;
        if (fused_blocks_per_sm<P, first.rows, first.cols>(&first_per_sm) != cudaSuccess ||
            fused_blocks_per_sm<P, alt.rows, alt.cols>(&alt_per_sm) != cudaSuccess) {
          (void)cudaGetLastError();  // clear it, so that the launch below does not report it
        } else if (prefer_alternate(a.n, a.h, a.w, first, int64_t(first_per_sm) * info.sms, alt,
                                    int64_t(alt_per_sm) * info.sms)) {
          return launch_fused<P, alt.rows, alt.cols>(a, stream);
        }
      }
    }
    return launch_fused<P, first.rows, first.cols>(a, stream);
  }
  if (FusedLayout<P, small.rows, small.cols>::kBytes <= info.smem_optin)
    return launch_fused<P, small.rows, small.cols>(a, stream);
  return cudaErrorInvalidConfiguration;
}

template <class P, const FusedTiles& kT>
int smallest_fused_bytes() {
  return FusedLayout<P, kT.small.rows, kT.small.cols>::kBytes;
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
