#include "checks.h"

#include <c10/util/Exception.h>

#include <sstream>
#include <string>

namespace espcn {

namespace {
// torch's Python names: float32, not Float.
std::string dtype_name(at::ScalarType d) {
  switch (d) {
    case at::kFloat: return "float32";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kDouble: return "float64";
    case at::kByte: return "uint8";
    default: return c10::toString(d);
  }
}

std::string dtype_list(std::initializer_list<at::ScalarType> dtypes) {
  std::ostringstream s;
  bool first = true;
  for (auto d : dtypes) {
    s << (first ? "" : " or ") << dtype_name(d);
    first = false;
  }
  return s.str();
}
}  // namespace

void check_input(const char* op, const at::Tensor& x, std::initializer_list<at::ScalarType> dtypes) {
  TORCH_CHECK(x.defined(), op, ": x is an undefined tensor");
  TORCH_CHECK(x.dim() == 4, op, ": x must be a 4-D (N, C, H, W) tensor, got ", x.dim(), "-D shape ",
              x.sizes());
  TORCH_CHECK(x.size(2) >= 1 && x.size(3) >= 1, op, ": x must have H and W >= 1, got shape ", x.sizes());
  bool ok = false;
  for (auto d : dtypes) ok = ok || x.scalar_type() == d;
  TORCH_CHECK(ok, op, ": x must be ", dtype_list(dtypes), " on ", x.device().type(), ", got ",
              dtype_name(x.scalar_type()));
  TORCH_CHECK(x.size(2) * x.size(3) < (int64_t(1) << 31), op, ": x has too many pixels per image (",
              x.size(2), "x", x.size(3), ")");
}

int64_t check_conv(const char* op, const char* wname, const char* bname, const at::Tensor& x,
                   const at::Tensor& weight, const at::Tensor& bias, int64_t in_channels,
                   int64_t max_kernel, at::ScalarType weight_dtype) {
  TORCH_CHECK(weight.device() == x.device(), op, ": ", wname, " is on ", weight.device(),
              " but x is on ", x.device(), "; all tensors must be on one device");
  TORCH_CHECK(bias.device() == x.device(), op, ": ", bname, " is on ", bias.device(), " but x is on ",
              x.device(), "; all tensors must be on one device");
  TORCH_CHECK(weight.scalar_type() == weight_dtype, op, ": ", wname, " must be ", dtype_name(weight_dtype),
              ", got ", dtype_name(weight.scalar_type()));
  TORCH_CHECK(bias.scalar_type() == at::kFloat, op, ": ", bname, " must be float32, got ",
              dtype_name(bias.scalar_type()));
  TORCH_CHECK(weight.dim() == 4, op, ": ", wname, " must be 4-D (out_channels, in_channels, k, k), got shape ",
              weight.sizes());
  const int64_t k = weight.size(2);
  TORCH_CHECK(weight.size(3) == k, op, ": ", wname, " must have a square kernel, got ", weight.size(2), "x",
              weight.size(3));
  TORCH_CHECK(k % 2 == 1, op, ": ", wname, " must have an odd kernel size (\"same\" padding), got ", k);
  TORCH_CHECK(k <= max_kernel, op, ": ", wname, " kernel size ", k, " is larger than the supported ", max_kernel);
  TORCH_CHECK(weight.size(1) == in_channels, op, ": ", wname, " expects ", weight.size(1),
              " input channel(s) but its input has ", in_channels);
  TORCH_CHECK(weight.size(0) >= 1, op, ": ", wname, " has no output channels");
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), op, ": ", bname, " must have shape (",
              weight.size(0), ",), got ", bias.sizes());
  return k;
}

int64_t check_scale(const char* op, const at::Tensor& x, int64_t scale, int64_t channels, const char* wname) {
  TORCH_CHECK(scale >= 1, op, ": scale must be >= 1, got ", scale);
  // In two steps: scale * scale overflows int64 for absurd scales (and a zero
  // product would fault the process).
  TORCH_CHECK(channels % scale == 0 && (channels / scale) % scale == 0, op, ": ", wname, " has ", channels,
              " output channels, not a multiple of scale^2 = ",
              scale < (int64_t(1) << 31) ? std::to_string(scale * scale) : std::to_string(scale) + "^2");
  // Rows and columns are int32 in the kernels, with some room for vector and
  // tile padding past the last one.
  constexpr int64_t kMaxSide = (int64_t(1) << 31) - (int64_t(1) << 16);
  TORCH_CHECK(x.size(2) < kMaxSide / scale && x.size(3) < kMaxSide / scale, op, ": x is ", x.size(2), "x",
              x.size(3), "; at scale ", scale, " each side must stay under ", kMaxSide / scale, " pixels");
  return channels / scale / scale;
}

Precision parse_precision(const char* op, c10::string_view precision) {
  if (precision == "fp32") return Precision::kFp32;
  if (precision == "tf32") return Precision::kTf32;
  if (precision == "fp16") return Precision::kFp16;
  if (precision == "bf16") return Precision::kBf16;
  if (precision == "int8") return Precision::kInt8;
  TORCH_CHECK(false, op, ": unknown precision '", std::string(precision.data(), precision.size()),
              "'; choose fp32, tf32, fp16, bf16 or int8");
}

void check_a1_ranges(const char* op, Precision p, const c10::optional<at::Tensor>& ranges, const at::Tensor& x,
                     int64_t channels) {
  if (!ranges.has_value()) return;
  const at::Tensor& r = *ranges;
  TORCH_CHECK(p == Precision::kInt8, op, ": a1_ranges applies to precision 'int8' only");
  TORCH_CHECK(r.dim() == 1 && r.size(0) == channels, op, ": a1_ranges must have shape [", channels,
              "] (w1's output channels), got ", r.sizes());
  TORCH_CHECK(r.scalar_type() == at::kFloat, op, ": a1_ranges must be float32, got ", r.scalar_type());
  TORCH_CHECK(r.device() == x.device(), op, ": a1_ranges is on ", r.device(), " but x is on ", x.device());
}

at::ScalarType precision_weight_dtype(Precision p) {
  return p == Precision::kFp16 ? at::kHalf : p == Precision::kBf16 ? at::kBFloat16 : at::kFloat;
}

}  // namespace espcn
