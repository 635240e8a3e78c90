// See dot_weights.h.
#include "dot_weights.h"

#include <cmath>
#include <cstring>

#include "../tile_geometry.h"

namespace espcn::cpu {

uint16_t bf16_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return uint16_t((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

namespace {
// max |w| / levels over a channel's n weights, in float32 as the reference
// (1 when they are all zero).
float channel_scale(const float* w, int n, int levels) {
  float m = 0.0f;
  for (int i = 0; i < n; ++i) m = std::fmax(m, std::fabs(w[i]));
  return m > 0.0f ? m / float(levels) : 1.0f;
}
// round(v / s) (ties to even) clamped to [-levels, levels].
float quantized(float v, float s, int levels) {
  return std::fmin(float(levels), std::fmax(-float(levels), std::nearbyint(v / s)));
}
}  // namespace

PackedDot pack_dot(const float* w, const float* b, int co, int ci, int k, Precision p, bool tanh_layer,
                   const float* in_ranges) {
  const bool int8 = p == Precision::kInt8;
  const int pack = int8 ? 4 : 2;
  const int groups = ceil_div(ci, pack);
  const int out = tanh_layer ? ceil_div(co, pack) * pack : co;
  PackedDot d;
  d.weight.assign(size_t(groups) * k * k * out, 0u);
  d.bias.assign(out, 0.0f);
  d.scale.assign(out, 0.0f);
  d.acc_start.assign(out, 0);
  std::vector<float> scaled(size_t(ci) * k * k);
  for (int o = 0; o < co; ++o) {
    const float* wo = w + size_t(o) * ci * k * k;
    if (int8 && in_ranges) {  // in float32, as the reference multiplies
      for (int i = 0; i < ci; ++i)
        for (int t = 0; t < k * k; ++t) scaled[size_t(i) * k * k + t] = wo[size_t(i) * k * k + t] * in_ranges[i];
      wo = scaled.data();
    }
    const float s = int8 ? channel_scale(wo, ci * k * k, 127) : 1.0f;
    if (int8) d.scale[o] = s / 127.0f;  // times the activations' 1/127
    int32_t qsum = 0;
    for (int i = 0; i < ci; ++i)
      for (int t = 0; t < k * k; ++t) {
        const float v = wo[size_t(i) * k * k + t];
        uint32_t bits;
        if (int8) {
          const float q = quantized(v, s, 127);
          qsum += int32_t(q);
          bits = uint32_t(uint8_t(int8_t(q))) << (8 * (i % pack));
        } else {
          bits = uint32_t(bf16_bits(v)) << (16 * (i % pack));
        }
        d.weight[(size_t(i / pack) * k * k + t) * out + o] |= bits;
      }
    d.bias[o] = b[o];
    d.acc_start[o] = -128 * qsum;
  }
  d.layer = DotLayer{d.weight.data(), d.scale.data(), d.bias.data(), d.acc_start.data(), groups, out, out, k};
  if (int8 && tanh_layer) {
    d.code_scale.assign(out, 127.0f);
    d.layer.code_scale = d.code_scale.data();
  }
  return d;
}

PackedDot pack_dot_float(const float* w, const float* b, int co, int ci, int k, int out_pack) {
  const int out = ceil_div(co, out_pack) * out_pack;
  PackedDot d;
  d.weight.assign(size_t(ci) * k * k * out, 0u);
  d.bias.assign(out, 0.0f);
  for (int o = 0; o < co; ++o) {
    for (int i = 0; i < ci * k * k; ++i) std::memcpy(&d.weight[size_t(i) * out + o], &w[size_t(o) * ci * k * k + i], 4);
    d.bias[o] = b[o];
  }
  d.layer = DotLayer{d.weight.data(), nullptr, d.bias.data(), nullptr, ci, out, out, k};
  return d;
}

int layer1_levels(int k) { return 65536 / (k * k) < 32767 ? 65536 / (k * k) : 32767; }

PackedDot pack_dot_int16(const float* w, const float* b, int co, int k, int out_pack, const float* ranges) {
  const int levels = layer1_levels(k);
  const int out = ceil_div(co, out_pack) * out_pack;
  PackedDot d;
  d.weight.assign(size_t(ceil_div(k, 2)) * k * out, 0u);
  d.bias.assign(out, 0.0f);
  d.scale.assign(out, 0.0f);
  for (int o = 0; o < co; ++o) {
    const float* wo = w + size_t(o) * k * k;
    const float s = channel_scale(wo, k * k, levels);
    d.scale[o] = s / 32767.0f;  // times the input's 1/32767
    for (int ky = 0; ky < k; ++ky)
      for (int kx = 0; kx < k; ++kx) {
        const float q = quantized(wo[ky * k + kx], s, levels);
        const uint32_t bits = uint32_t(uint16_t(int16_t(q))) << (16 * (ky % 2));
        d.weight[(size_t(ky / 2) * k + kx) * out + o] |= bits;
      }
    d.bias[o] = b[o];
  }
  d.code_scale.assign(out, 127.0f);
  if (ranges)
    for (int o = 0; o < co; ++o) d.code_scale[o] = 127.0f / ranges[o];  // in float32, as the reference
  d.layer = DotLayer{d.weight.data(), d.scale.data(), d.bias.data(), nullptr, 1, out, out, k};
  d.layer.code_scale = d.code_scale.data();
  return d;
}

}  // namespace espcn::cpu
