// The Hopper kernel's launcher. This file alone is compiled for sm_90a
// (setup.py: -gencode=arch=compute_90a,code=sm_90a), so the kernel exists
// only where wgmma and TMA do; espcn_fused.cu asks hopper_available() first.
#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>

#include "espcn_fused.cuh"
#include "espcn_hopper.cuh"
#include "espcn_hopper_kernel.cuh"

namespace espcn::cuda {
namespace {

using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

// cuTensorMapEncodeTiled through the runtime (no link against the driver library).
EncodeTiled encode_tiled() {
  static std::atomic<EncodeTiled> cached{nullptr};
  EncodeTiled fn = cached.load(std::memory_order_acquire);
  if (fn == nullptr) {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult found{};
#if CUDART_VERSION >= 12050
    const cudaError_t err =
        cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &found);
#else  // (the versioned query is 12.5's; 13.0 deprecates the other)
    const cudaError_t err = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &p, cudaEnableDefault, &found);
#endif
    if (err != cudaSuccess || found != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      return nullptr;
    }
    fn = reinterpret_cast<EncodeTiled>(p);
    cached.store(fn, std::memory_order_release);
  }
  return fn;
}

template <class P, int ROWS>
cudaError_t launch(const EspcnArgs& a, cudaStream_t stream) {
  using L = HopperLayout<ROWS>;
  const DeviceInfo info = device_info();
  static std::atomic<bool> configured[kMaxDevices];
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  if (device < 0 || device >= kMaxDevices) return cudaErrorInvalidDevice;
  if (!configured[device].load(std::memory_order_acquire)) {
    err = cudaFuncSetAttribute(espcn_hopper_kernel<P, ROWS>, cudaFuncAttributeMaxDynamicSharedMemorySize, L::kBytes);
    if (err != cudaSuccess) return err;
    configured[device].store(true, std::memory_order_release);
  }
  EncodeTiled encode = encode_tiled();
  if (encode == nullptr) return cudaErrorNotSupported;
  const int64_t slots = int64_t(info.sms) * kHopperConsumers;
  const int rows = hopper_strip_rows(a.n, a.h, a.w, slots);
  const ImageMapShape s = image_map_shape(a, rows);
  const cuuint64_t dims[3] = {s.dims[0], s.dims[1], s.dims[2]};
  const cuuint64_t pitches[2] = {s.pitches[0], s.pitches[1]};
  const cuuint32_t box[3] = {s.box[0], s.box[1], s.box[2]};
  const cuuint32_t steps[3] = {1, 1, 1};
  CUtensorMap map;
  const CUresult res = encode(&map, a.half_io ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 3,
                              const_cast<void*>(a.x), dims, pitches, box, steps, CU_TENSOR_MAP_INTERLEAVE_NONE,
                              CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
                              CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (res != CUDA_SUCCESS) return cudaErrorInvalidValue;
  const int64_t strips = TileGrid(a.h, a.w, TileShape{rows, kHopperStripCols}).count(a.n);
  if (strips == 0) return cudaSuccess;
  const int64_t blocks = std::min<int64_t>((strips + kHopperConsumers - 1) / kHopperConsumers, info.sms);
  espcn_hopper_kernel<P, ROWS><<<unsigned(blocks), L::kThreads, L::kBytes, stream>>>(map, a, rows);
  return cudaGetLastError();
}

}  // namespace

bool hopper_available() {
  static std::atomic<int> known[kMaxDevices];  // 0: not asked yet, 1: yes, 2: no
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices) {
    (void)cudaGetLastError();
    return false;
  }
  int state = known[device].load(std::memory_order_acquire);
  if (state == 0) {
    const DeviceInfo info = device_info();
    bool yes = info.major == 9 && info.smem_optin >= HopperLayout<kHopperStepRows>::kBytes && encode_tiled() != nullptr;
    // The sm_90a binary loads on compute capability 9.0 alone: ask the runtime.
    cudaFuncAttributes attributes;
    if (yes && cudaFuncGetAttributes(&attributes, espcn_hopper_kernel<Fp16, kHopperStepRows>) != cudaSuccess) {
      (void)cudaGetLastError();
      yes = false;
    }
    state = yes ? 1 : 2;
    known[device].store(state, std::memory_order_release);
  }
  return state == 1;
}

template <int ROWS>
cudaError_t launch_hopper_rows(const EspcnArgs& a, cudaStream_t stream) {
  if (a.precision == Precision::kBf16) return launch<Bf16, ROWS>(a, stream);
  return launch<Fp16, ROWS>(a, stream);
}

cudaError_t launch_hopper(const EspcnArgs& a, cudaStream_t stream) {
  return launch_hopper_rows<kHopperStepRows>(a, stream);
}

HopperVariant hopper_variant(Precision precision, int step_rows) {
  const bool bf16 = precision == Precision::kBf16;
  if (step_rows == 2) {
    return {&launch_hopper_rows<2>,
            bf16 ? reinterpret_cast<const void*>(&espcn_hopper_kernel<Bf16, 2>)
                 : reinterpret_cast<const void*>(&espcn_hopper_kernel<Fp16, 2>),
            HopperLayout<2>::kBytes, HopperLayout<2>::kThreads};
  }
  return {&launch_hopper_rows<1>,
          bf16 ? reinterpret_cast<const void*>(&espcn_hopper_kernel<Bf16, 1>)
               : reinterpret_cast<const void*>(&espcn_hopper_kernel<Fp16, 1>),
          HopperLayout<1>::kBytes, HopperLayout<1>::kThreads};
}

}  // namespace espcn::cuda
