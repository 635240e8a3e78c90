// CPU bindings: check the arguments, repack the weights, split the batch into
// strips of rows and run them on torch's intra-op threads.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "../checks.h"
#include "../tile_geometry.h"
#include "dot_weights.h"
#include "kernels.h"

namespace espcn::cpu {
namespace {

// Weights as [ci][ky][kx][co]: the kernels broadcast neighbouring output
// channels' weights for one input tap.
struct Packed {
  std::vector<float> weight, bias, winograd, zero_bias;
  PackedConv conv;
};

// Winograd F(2x2, 3x3) weights: U = G g G^T for each (co, ci), as [16][ci][co].
std::vector<float> winograd_weights(const float* g, int co, int ci) {
  static const double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  std::vector<float> u(size_t(16) * ci * co);
  for (int o = 0; o < co; ++o)
    for (int i = 0; i < ci; ++i) {
      const float* k = g + (size_t(o) * ci + i) * 9;
      for (int a = 0; a < 4; ++a)
        for (int b = 0; b < 4; ++b) {
          double sum = 0;
          for (int p = 0; p < 3; ++p)
            for (int q = 0; q < 3; ++q) sum += G[a][p] * k[p * 3 + q] * G[b][q];
          u[(size_t(a * 4 + b) * ci + i) * co + o] = float(sum);
        }
    }
  return u;
}

Packed pack(const at::Tensor& weight, const at::Tensor& bias, bool winograd = false) {
  const at::Tensor w = weight.contiguous(), b = bias.contiguous();
  const int co = int(w.size(0)), ci = int(w.size(1)), k = int(w.size(2));
  Packed p;
  p.weight.resize(size_t(k) * k * ci * co);
  const float* src = w.data_ptr<float>();
  for (int o = 0; o < co; ++o)
    for (int i = 0; i < ci; ++i)
      for (int ky = 0; ky < k; ++ky)
        for (int kx = 0; kx < k; ++kx)
          p.weight[((size_t(i) * k + ky) * k + kx) * co + o] = src[((size_t(o) * ci + i) * k + ky) * k + kx];
  p.bias.assign(b.data_ptr<float>(), b.data_ptr<float>() + co);
  p.conv = PackedConv{p.weight.data(), p.bias.data(), ci, co, k, nullptr, nullptr};
  if (winograd && k == 3) {
    p.winograd = winograd_weights(src, co, ci);
    p.zero_bias.assign(co, 0.0f);
    p.conv.winograd = p.winograd.data();
    p.conv.zero_bias = p.zero_bias.data();
  }
  return p;
}

// Allocates the (N, out_channels, H*r, W*r) output and runs kernel(job,
// scratch) over strips of rows of every image, in parallel: one task per
// strip, one scratch buffer per worker.
template <typename Kernel>
at::Tensor run_strips(const at::Tensor& x_in, int64_t out_channels, Epilogue epilogue, int r, bool clamp,
                      size_t scratch_floats, Kernel kernel) {
  const at::Tensor x = x_in.contiguous();
  const int64_t n = x.size(0);
  const int h = int(x.size(2)), w = int(x.size(3));
  at::Tensor out = at::empty({n, out_channels, int64_t(h) * r, int64_t(w) * r}, x.options());
  if (n == 0) return out;
  const float* xp = x.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const int64_t in_image = x.size(1) * int64_t(h) * w, out_image = out_channels * int64_t(r) * r * h * w;
  const int strips = cpu_strip_count(h, at::get_num_threads());
  at::parallel_for(0, n * strips, 1, [&](int64_t begin, int64_t end) {
    std::unique_ptr<float[]> scratch(new float[scratch_floats]);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t i = t / strips;
      const int s = int(t % strips);
      const ConvJob job{xp + i * in_image, op + i * out_image, h, w, strip_begin(s, strips, h),
                        strip_begin(s + 1, strips, h), epilogue, r, clamp};
      kernel(job, scratch.get());
    }
  });
  return out;
}

at::Tensor conv_layer(const char* op, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                      Epilogue epilogue, int64_t scale, bool clamp) {
  const Kernels& k = cpu_kernels();
  check_input(op, x, {at::kFloat});
  check_conv(op, "weight", "bias", x, weight, bias, x.size(1), k.max_kernel);
  const bool shuffle = epilogue == Epilogue::kPixelShuffle;
  const int64_t out_channels = check_scale(op, x, shuffle ? scale : 1, weight.size(0), "weight");
  const Packed p = pack(weight, bias);
  return run_strips(x, out_channels, epilogue, shuffle ? int(scale) : 1, clamp, k.conv_scratch(p.conv, int(x.size(3))),
                    [&](const ConvJob& job, float* scratch) { k.conv(p.conv, job, scratch); });
}

at::Tensor conv2d_tanh(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return conv_layer("espcn_fast::conv2d_tanh", x, weight, bias, Epilogue::kTanh, 1, false);
}

at::Tensor conv2d_pixel_shuffle(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                int64_t scale, bool clamp) {
  return conv_layer("espcn_fast::conv2d_pixel_shuffle", x, weight, bias, Epilogue::kPixelShuffle, scale, clamp);
}

// espcn_forward's arguments, in every precision: a float32 image, three
// layers of `wdtype` weights, a scale the last layer's channels allow.
// Returns the output's channels.
int64_t check_network(const char* op, const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                      const at::Tensor& w2, const at::Tensor& b2, const at::Tensor& w3, const at::Tensor& b3,
                      int64_t scale, at::ScalarType wdtype) {
  const int max_kernel = cpu_kernels().max_kernel;
  check_input(op, x, {at::kFloat});
  check_conv(op, "w1", "b1", x, w1, b1, x.size(1), max_kernel, wdtype);
  check_conv(op, "w2", "b2", x, w2, b2, w1.size(0), max_kernel, wdtype);
  check_conv(op, "w3", "b3", x, w3, b3, w2.size(0), max_kernel, wdtype);
  return check_scale(op, x, scale, w3.size(0), "w3");
}

// The bf16/int8 network (dot_rows.h). Layer 1 stays float32 in bf16 (its
// weights given in bfloat16) and is 16-bit fixed point in int8; every layer
// is packed for the dot kernels.
at::Tensor espcn_forward_dot(const char* op, Precision precision, const at::Tensor& x, const at::Tensor& w1,
                             const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2, const at::Tensor& w3,
                             const at::Tensor& b3, int64_t scale, bool clamp,
                             const c10::optional<at::Tensor>& a1_ranges) {
  std::string why_not;
  const DotKernels* k = dot_kernels(precision, why_not);
  TORCH_CHECK(k != nullptr, op, ": ", why_not);
  const at::ScalarType wdtype = precision_weight_dtype(precision);
  const int64_t out_channels = check_network(op, x, w1, b1, w2, b2, w3, b3, scale, wdtype);
  // Non-finite values have no int8 code, and the tanh clamps them: refused
  // rather than turned into plausible pixels.
  const at::Tensor xc = x.contiguous();
  const float* xp = xc.data_ptr<float>();
  // int8 also reads its input as 16-bit fixed point on [-1, 1]: anything
  // else would wrap. One pass counts both.
  const bool int8 = precision == Precision::kInt8;
  TORCH_CHECK(!int8 || x.size(1) == 1, op, ": precision 'int8' takes one input channel (the Y plane), got ",
              x.size(1));
  int64_t bad = 0, outside = 0;
  for (int64_t i = 0, n = xc.numel(); i < n; ++i) {
    bad += !std::isfinite(xp[i]);
    outside += !(std::fabs(xp[i]) <= 1.0f);
  }
  TORCH_CHECK(bad == 0, op, ": x holds ", bad, " NaN or infinite value(s); precision '", int8 ? "int8" : "bf16",
              "' takes finite inputs");
  TORCH_CHECK(!int8 || outside == 0, op, ": x holds ", outside,
              " value(s) outside [-1, 1]; precision 'int8' reads its input as 16-bit fixed point on [-1, 1]");
  at::Tensor ranges;
  const float* rp = nullptr;
  if (a1_ranges.has_value()) {
    ranges = a1_ranges->contiguous();
    rp = ranges.data_ptr<float>();
    for (int64_t i = 0; i < ranges.numel(); ++i)
      TORCH_CHECK(rp[i] > 0.0f && rp[i] <= 1.0f, op, ": a1_ranges[", i, "] is ", rp[i],
                  "; the ranges of tanh outputs lie in (0, 1]");
  }
  // Each layer's weights as float32 (bf16 ones exactly), packed for the dot
  // kernels: layer 1 as 16-bit pairs (int8) or float32 (bf16).
  auto packed = [&](const at::Tensor& weight, const at::Tensor& bias, bool layer1, bool tanh_layer) {
    const at::Tensor w = weight.to(at::kFloat).contiguous(), b = bias.contiguous();
    const float *wp = w.data_ptr<float>(), *bp = b.data_ptr<float>();
    const int co = int(w.size(0)), ci = int(w.size(1)), kk = int(w.size(2));
    if (layer1)
      return int8 ? pack_dot_int16(wp, bp, co, kk, k->pack, rp) : pack_dot_float(wp, bp, co, ci, kk, k->pack);
    return pack_dot(wp, bp, co, ci, kk, precision, tanh_layer, tanh_layer ? rp : nullptr);
  };
  const PackedDot l1 = packed(w1, b1, true, true);
  const PackedDot l2 = packed(w2, b2, false, true), l3 = packed(w3, b3, false, false);
  return run_strips(xc, out_channels, Epilogue::kPixelShuffle, int(scale), clamp,
                    k->espcn_scratch(l1.layer, l2.layer, l3.layer, int(x.size(3))),
                    [&](const ConvJob& job, float* scratch) { k->espcn(l1.layer, l2.layer, l3.layer, job, scratch); });
}

at::Tensor espcn_forward(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                         const at::Tensor& w2, const at::Tensor& b2, const at::Tensor& w3,
                         const at::Tensor& b3, int64_t scale, bool clamp, c10::string_view precision_name,
                         const c10::optional<at::Tensor>& a1_ranges) {
  const char* op = "espcn_fast::espcn_forward";
  const Precision precision = parse_precision(op, precision_name);
  TORCH_CHECK(precision == Precision::kFp32 || precision == Precision::kBf16 || precision == Precision::kInt8, op,
              ": the CPU kernels compute in fp32, bf16 or int8; precision '",
              std::string(precision_name.data(), precision_name.size()), "' runs on CUDA tensors only");
  check_a1_ranges(op, precision, a1_ranges, x, w1.dim() > 0 ? w1.size(0) : 0);
  if (precision != Precision::kFp32)
    return espcn_forward_dot(op, precision, x, w1, b1, w2, b2, w3, b3, scale, clamp, a1_ranges);
  const Kernels& k = cpu_kernels();
  const int64_t out_channels = check_network(op, x, w1, b1, w2, b2, w3, b3, scale, at::kFloat);
  const Packed p1 = pack(w1, b1), p2 = pack(w2, b2, /*winograd=*/true), p3 = pack(w3, b3);
  return run_strips(x, out_channels, Epilogue::kPixelShuffle, int(scale), clamp,
                    k.espcn_scratch(p1.conv, p2.conv, p3.conv, int(x.size(3))),
                    [&](const ConvJob& job, float* scratch) { k.espcn(p1.conv, p2.conv, p3.conv, job, scratch); });
}

// The kernels that run `precision` here ("avx512", "avx512-vnni", ...), or
// the error saying why none does.
std::string cpu_isa(c10::string_view precision_name) {
  const char* op = "espcn_fast::cpu_isa";
  const Precision precision = parse_precision(op, precision_name);
  if (precision == Precision::kFp32) return cpu_kernels().name;
  TORCH_CHECK(precision == Precision::kBf16 || precision == Precision::kInt8, op, ": precision '",
              std::string(precision_name.data(), precision_name.size()), "' has no CPU kernels");
  std::string why_not;
  const DotKernels* k = dot_kernels(precision, why_not);
  TORCH_CHECK(k != nullptr, op, ": ", why_not);
  return k->name;
}

}  // namespace

TORCH_LIBRARY_IMPL(espcn_fast, CPU, m) {
  m.impl("conv2d_tanh", &conv2d_tanh);
  m.impl("conv2d_pixel_shuffle", &conv2d_pixel_shuffle);
  m.impl("espcn_forward", &espcn_forward);
}

TORCH_LIBRARY_IMPL(espcn_fast, CompositeExplicitAutograd, m) { m.impl("cpu_isa", &cpu_isa); }

}  // namespace espcn::cpu
