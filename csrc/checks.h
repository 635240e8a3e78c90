// Argument checks shared by every backend's bindings: each names the op, the
// argument and what was expected.
#pragma once

#include <ATen/core/Tensor.h>

#include <initializer_list>

#include "precision.h"

namespace espcn {

// x: (N, C, H, W), H and W >= 1, of one of `dtypes`.
void check_input(const char* op, const at::Tensor& x, std::initializer_list<at::ScalarType> dtypes);

// weight (Cout, Cin, k, k) of weight_dtype with odd k <= max_kernel, bias (Cout,)
// float32, Cin == in_channels, on x's device. Returns k.
int64_t check_conv(const char* op, const char* wname, const char* bname, const at::Tensor& x,
                   const at::Tensor& weight, const at::Tensor& bias, int64_t in_channels,
                   int64_t max_kernel, at::ScalarType weight_dtype = at::kFloat);

Precision parse_precision(const char* op, c10::string_view precision);
// The dtype its weights come in: float16 for fp16, bfloat16 for bf16, else float32.
at::ScalarType precision_weight_dtype(Precision p);

// espcn_forward's a1_ranges: absent, or with precision int8 a float32 (C1,)
// tensor (C1: layer 1's output channels) on x's device; its values (finite,
// in (0, 1]) are checked where they are read (the CPU int8 kernel).
void check_a1_ranges(const char* op, Precision p, const c10::optional<at::Tensor>& ranges, const at::Tensor& x,
                     int64_t channels);

// scale >= 1, `channels` divisible by scale^2, and x's HR sides (H and W
// times scale) within the kernels' 32-bit row and column indices. Returns
// channels / scale^2.
int64_t check_scale(const char* op, const at::Tensor& x, int64_t scale, int64_t channels, const char* wname);

}  // namespace espcn
