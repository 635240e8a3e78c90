// Weights of the bf16/int8 kernels (DotLayer, kernels.h) from float32 ones:
// rounded to bf16, or quantized to int8 per output channel as
// espcn_fast/reduced_precision.py does. No torch: the bindings and the C++
// checks share it.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels.h"

namespace espcn::cpu {

struct PackedDot {
  std::vector<uint32_t> weight;
  std::vector<float> scale, bias, code_scale;
  std::vector<int32_t> acc_start;
  DotLayer layer;
};

// w: (co, ci, k, k) float32, b: (co,). A tanh layer's outputs are padded to
// whole groups of the precision's pack (the next layer's input words), in
// int8 stored at the full range (code_scale 127). int8 with `in_ranges`
// (ci ranges of the input's codes, or null for 1): the weights of input
// channel i quantized as w * in_ranges[i] (reduced_precision.int8_layer2_weight).
PackedDot pack_dot(const float* w, const float* b, int co, int ci, int k, Precision p, bool tanh_layer,
                   const float* in_ranges = nullptr);

// Layer 1 of those kernels, which stays float32: its weights as words of
// their bits, its outputs padded to whole groups of `out_pack` channels.
PackedDot pack_dot_float(const float* w, const float* b, int co, int ci, int k, int out_pack);

// int8's layer 1 (one input channel): 16-bit weights on layer1_levels(k)
// levels per sign and output channel, as words of two vertically adjacent
// taps, [(k + 1) / 2][k][out]; scale = (max |w| / levels) / 32767 (the
// input's 16-bit step); outputs padded to whole groups of `out_pack`, stored
// with code_scale 127 / ranges[o] (ranges: co values in (0, 1], or null for 1).
PackedDot pack_dot_int16(const float* w, const float* b, int co, int k, int out_pack, const float* ranges = nullptr);
int layer1_levels(int k);

// float32 -> bf16 bits, to nearest even (finite values).
uint16_t bf16_bits(float f);

}  // namespace espcn::cpu
