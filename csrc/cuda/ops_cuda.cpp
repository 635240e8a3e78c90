// CUDA bindings: check the arguments, allocate the output, launch on the
// current stream. No host synchronisation and no allocation but the output on
// the fused path, so the ops are safe under CUDA graph capture.
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <string>

#include "../checks.h"
#include "../tile_geometry.h"
#include "kernels.h"

namespace espcn::cuda {
namespace {

void check_launch(const char* op, cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

// One checked layer: x float32/float16, weight and bias float32, on x's device.
at::Tensor run_layer(const char* op, const at::Tensor& x_in, const at::Tensor& weight, const at::Tensor& bias,
                     bool shuffle, int64_t scale, bool clamp) {
  const at::Tensor x = x_in.contiguous(), w = weight.contiguous(), b = bias.contiguous();
  const int64_t n = x.size(0), h = x.size(2), wd = x.size(3), r = shuffle ? scale : 1;
  const int64_t out_channels = shuffle ? weight.size(0) / (scale * scale) : weight.size(0);
  at::Tensor out = at::empty({n, out_channels, h * r, wd * r}, x.options());
  if (out.numel() == 0) return out;
  TORCH_CHECK(n <= 0x7fffffff, op, ": batch of ", n, " images is too large");
  ConvLayerArgs a{x.data_ptr(), w.data_ptr<float>(), b.data_ptr<float>(), out.data_ptr(),
                  x.scalar_type() == at::kHalf, int(n), int(x.size(1)), int(weight.size(0)), int(h), int(wd),
                  int(weight.size(2)), shuffle, int(scale), clamp};
  check_launch(op, conv_layer(a, at::cuda::getCurrentCUDAStream()));
  return out;
}

at::Tensor conv_op(const char* op, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                   bool shuffle, int64_t scale, bool clamp) {
  check_input(op, x, {at::kFloat, at::kHalf});
  check_conv(op, "weight", "bias", x, weight, bias, x.size(1), kLayerMaxKernel);
  check_scale(op, x, shuffle ? scale : 1, weight.size(0), "weight");
  const c10::cuda::CUDAGuard guard(x.device());
  return run_layer(op, x, weight, bias, shuffle, scale, clamp);
}

at::Tensor conv2d_tanh(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return conv_op("espcn_fast::conv2d_tanh", x, weight, bias, false, 1, false);
}

at::Tensor conv2d_pixel_shuffle(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                int64_t scale, bool clamp) {
  return conv_op("espcn_fast::conv2d_pixel_shuffle", x, weight, bias, true, scale, clamp);
}

// The shape the fused kernel is compiled for (tile_geometry.h).
bool fused_shape(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w2, const at::Tensor& w3,
                 int64_t scale) {
  return x.size(1) == 1 && scale >= 1 && scale <= kFusedMaxScale && w1.sizes() == at::IntArrayRef{kC1, 1, kK1, kK1} &&
         w2.sizes() == at::IntArrayRef{kC2, kC1, kK2, kK2} &&
         w3.sizes() == at::IntArrayRef{scale * scale, kC2, kK3, kK3};
}

at::Tensor espcn_forward(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                         const at::Tensor& b2, const at::Tensor& w3, const at::Tensor& b3, int64_t scale, bool clamp,
                         c10::string_view precision_name, const c10::optional<at::Tensor>& a1_ranges) {
  const char* op = "espcn_fast::espcn_forward";
  const Precision precision = parse_precision(op, precision_name);
  TORCH_CHECK(precision != Precision::kInt8, op, ": precision 'int8' runs on CPU tensors only");
  check_a1_ranges(op, precision, a1_ranges, x, w1.dim() > 0 ? w1.size(0) : 0);
  const at::ScalarType wdtype = precision_weight_dtype(precision);
  check_input(op, x, {at::kFloat, at::kHalf});
  check_conv(op, "w1", "b1", x, w1, b1, x.size(1), kLayerMaxKernel, wdtype);
  check_conv(op, "w2", "b2", x, w2, b2, w1.size(0), kLayerMaxKernel, wdtype);
  check_conv(op, "w3", "b3", x, w3, b3, w2.size(0), kLayerMaxKernel, wdtype);
  const int64_t out_channels = check_scale(op, x, scale, w3.size(0), "w3");
  const c10::cuda::CUDAGuard guard(x.device());

  if (fused_shape(x, w1, w2, w3, scale) && espcn_fused_supported(precision)) {
    const at::Tensor xc = x.contiguous(), c1 = w1.contiguous(), c2 = w2.contiguous(), c3 = w3.contiguous();
    const at::Tensor d1 = b1.contiguous(), d2 = b2.contiguous(), d3 = b3.contiguous();
    const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
    // Pixels (and so tiles) are counted in int32, with room for a grid's
    // stride past the last tile; checked before the output is allocated.
    TORCH_CHECK(n * h * w < (int64_t(1) << 31) - (int64_t(1) << 24), op, ": the batch has ", n * h * w,
                " pixels; the fused kernel takes fewer than 2^31 - 2^24 per call (split the batch)");
    at::Tensor out = at::empty({n, out_channels, h * scale, w * scale}, x.options());
    if (out.numel() == 0) return out;
    EspcnArgs a{xc.data_ptr(), c1.data_ptr(), d1.data_ptr<float>(), c2.data_ptr(), d2.data_ptr<float>(),
                c3.data_ptr(), d3.data_ptr<float>(), out.data_ptr(), x.scalar_type() == at::kHalf,
                int(n), int(h), int(w), int(scale), clamp, precision};
    check_launch(op, espcn_fused(a, at::cuda::getCurrentCUDAStream()));
    return out;
  }

  // Any other shape, or a GPU the fused kernel does not fit: the three
  // per-layer kernels in float32 (at least the precision asked for).
  const at::Tensor xf = x.to(at::kFloat);
  at::Tensor t = run_layer(op, xf, w1.to(at::kFloat), b1, false, 1, false);
  t = run_layer(op, t, w2.to(at::kFloat), b2, false, 1, false);
  return run_layer(op, t, w3.to(at::kFloat), b3, true, scale, clamp).to(x.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(espcn_fast, CUDA, m) {
  m.impl("conv2d_tanh", &conv2d_tanh);
  m.impl("conv2d_pixel_shuffle", &conv2d_pixel_shuffle);
  m.impl("espcn_forward", &espcn_forward);
}

}  // namespace espcn::cuda
