// The fused kernel's entry points: pick the precision's launcher, and say
// whether the current device can run it.
#include <cuda_runtime.h>

#include <atomic>
#include <mutex>

#include "espcn_fused.cuh"
#include "espcn_hopper.cuh"
#include "kernels.h"

namespace espcn::cuda {

DeviceInfo device_info() {
  // Read once per device: the attribute queries cost microseconds per launch otherwise.
  // Host threads may launch concurrently: an entry is filled under the lock and
  // published by its flag, so no reader sees half of it.
  struct Entry {
    std::atomic<bool> ready{false};
    DeviceInfo info;
  };
  static Entry cache[kMaxDevices];
  static std::mutex filling;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices) return DeviceInfo{};
  Entry& entry = cache[device];
  if (!entry.ready.load(std::memory_order_acquire)) {
    std::lock_guard<std::mutex> lock(filling);
    if (!entry.ready.load(std::memory_order_relaxed)) {
      DeviceInfo fresh;
      if (cudaDeviceGetAttribute(&fresh.major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
          cudaDeviceGetAttribute(&fresh.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess ||
          cudaDeviceGetAttribute(&fresh.sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess)
        return DeviceInfo{};
      entry.info = fresh;
      entry.ready.store(true, std::memory_order_release);
    }
  }
  return entry.info;
}

bool espcn_fused_supported(Precision precision) {
  const DeviceInfo info = device_info();
  if (info.major < 8) return false;  // mma.sync bf16/tf32, ldmatrix, cvt.rna.tf32: sm_80+
  int bytes = 0;
  switch (precision) {
    case Precision::kFp32: bytes = fused_bytes_fp32(); break;
    case Precision::kTf32: bytes = fused_bytes_tf32(); break;
    case Precision::kFp16: bytes = fused_bytes_fp16(); break;
    case Precision::kBf16: bytes = fused_bytes_bf16(); break;
    case Precision::kInt8: return false;  // CPU only; the bindings refuse it
  }
  return bytes <= info.smem_optin;
}

cudaError_t espcn_fused(const EspcnArgs& a, cudaStream_t stream) {
#if defined(ESPCN_WITH_HOPPER)
  if (hopper_takes(a) && hopper_available()) return launch_hopper(a, stream);
#endif
  switch (a.precision) {
    case Precision::kFp32: return launch_fused_fp32(a, stream);
    case Precision::kTf32: return launch_fused_tf32(a, stream);
    case Precision::kFp16: return launch_fused_fp16(a, stream);
    case Precision::kBf16: return launch_fused_bf16(a, stream);
    case Precision::kInt8: break;
  }
  return cudaErrorInvalidValue;
}

}  // namespace espcn::cuda
