// The CPU convolution kernels, written once with GCC vector extensions and
// compiled once per instruction set by isa_*.cpp, each of which defines
//   ESPCN_ISA     the namespace of this copy (avx512, avx2, portable)
//   ESPCN_VW      floats per vector (16, 8, 4)
//   ESPCN_ACC     accumulator vectors in a register tile (24 of 32 zmm; 12 of 16 ymm/xmm)
// and includes this file after its `#pragma GCC target`. Everything here has
// internal linkage, so no inline function compiled for one instruction set
// can be picked by the linker for another.
//
// Layout: an image runs down a strip a row at a time. Inputs and
// intermediates live in ring buffers of rows stored channel by channel
// (planar), with zero columns on both sides for the "same" padding. A vector
// holds VW neighbouring pixels of one channel; a register tile is NC output
// channels x NX vectors of pixels, and its inner step loads NX input vectors
// once, broadcasts NC weights and does NC * NX FMAs. Every address in that
// step is a base pointer plus a constant.

#ifndef ESPCN_ISA
#error "define ESPCN_ISA, ESPCN_VW and ESPCN_ACC before including conv_rows.h"
#endif

namespace espcn::cpu::ESPCN_ISA {
namespace {

constexpr int VW = ESPCN_VW;
constexpr int kAcc = ESPCN_ACC;
constexpr int kMaxNC = ESPCN_MAXNC;  // output channels per register tile
constexpr int kMaxKernel = 7;     // the bindings refuse larger kernels

typedef float vf __attribute__((vector_size(VW * 4)));
typedef float vf_u __attribute__((vector_size(VW * 4), aligned(4)));
typedef int32_t vi __attribute__((vector_size(VW * 4)));

inline vf load(const float* p) { return *reinterpret_cast<const vf_u*>(p); }
inline void store(float* p, vf v) { *reinterpret_cast<vf_u*>(p) = v; }
// s - 0 is exactly s (unlike 0 + s for s = -0), so this folds to a plain broadcast.
inline vf splat(float s) { return s - vf{}; }
// a * b + c in one rounding where the instruction set has FMA.
inline vf fma_v(vf a, vf b, vf c) {
#if defined(ESPCN_FMA512)
  return (vf)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif defined(ESPCN_FMA256)
  return (vf)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
  return a * b + c;
#endif
}
// 1 / d for d >= 1. AVX-512: the 14-bit estimate and one Newton step (error
// below 2^-27), several times the throughput of a 512-bit division.
inline vf recip(vf d) {
#if defined(ESPCN_FMA512)
  const vf r = (vf)_mm512_rcp14_ps((__m512)d);
  return fma_v(r, fma_v(-d, r, splat(1.0f)), r);
#else
  return 1.0f / d;
#endif
}
// exp(z) for 0 <= z <= 20: z = n ln2 + r with |r| <= ln2 / 2 (ln2 split in
// two so that r is exact), exp(r) by its Taylor series to r^7 (error below
// 1e-8 relative), times 2^n put straight into the exponent bits.
inline vf exp_nonneg(vf z) {
  const vi n = __builtin_convertvector(z * 1.44269504088896341f + 0.5f, vi);  // z >= 0: truncation = floor
  const vf nf = __builtin_convertvector(n, vf);
  vf r = z - nf * 0.693359375f;
  r = r - nf * -2.12194440e-4f;
  vf p = splat(1.0f / 5040.0f);
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const vi bits = (n + 127) << 23;
  return p * (vf)bits;  // a vector cast reinterprets the bits
}

// tanh accurate to about 1 ulp: an odd polynomial below |x| = 0.625 (fitted
// for relative error; no cancellation), 1 - 2 / (exp(2|x|) + 1) above, the
// sign put back at the end. NaN stays NaN.
inline vf tanh_v(vf x) {
  const vi xi = (vi)x;
  const vi sign = xi & int32_t(0x80000000u);
  const vi axi = xi & 0x7fffffff;
  const vf ax = (vf)axi;
  const vf t = ax * ax;
  vf p = splat(2.153617591e-03f);
  p = p * t + -8.189974236e-03f;
  p = p * t + 2.170626261e-02f;
  p = p * t + -5.394789024e-02f;
  p = p * t + 1.333321615e-01f;
  p = p * t + -3.333333111e-01f;
  const vf small = ax + ax * t * p;
  vf z = ax + ax;
  z = z < 20.0f ? z : splat(20.0f);  // tanh(10) rounds to 1; keeps exp finite
  const vf large = 1.0f - 2.0f * recip(exp_nonneg(z) + 1.0f);
  vf r = ax < 0.625f ? small : large;
  r = (vf)((vi)r | sign);
  return x == x ? r : x;
}

// Pixel vectors per tile for NC output channels.
constexpr int nx_for(int nc) { return kAcc / nc > 6 ? 6 : kAcc / nc; }

// One register tile: output channels [c0, c0 + NC) x pixels [x0, x0 + NX * VW)
// of one row, with tanh when kTanh (on the registers: NC * NX independent
// chains keep the units busy, where a pass over the row would wait on each). rows[ky] points at input channel 0,
// column x0 - K / 2 of row y - K / 2 + ky; channels are `lp` floats apart.
// w is [ci][ky][kx][cout] offset by c0; out points at channel c0, column x0.
template <int NC, int NX, int K, bool kTanh>
inline void tile(const float* const* rows, size_t lp, int cin, const float* w, int cout, const float* bias,
                 float* out, size_t out_lp) {
  vf acc[NC][NX];
#pragma GCC unroll 16
  for (int c = 0; c < NC; ++c) {
    const vf b = splat(bias[c]);
#pragma GCC unroll 8
    for (int v = 0; v < NX; ++v) acc[c][v] = b;
  }
  const float* wp = w;
  for (int ci = 0; ci < cin; ++ci) {
#pragma GCC unroll 8
    for (int ky = 0; ky < K; ++ky) {
      const float* src = rows[ky] + ci * lp;
#pragma GCC unroll 8
      for (int kx = 0; kx < K; ++kx, wp += cout) {
        vf in[NX];
#pragma GCC unroll 8
        for (int v = 0; v < NX; ++v) in[v] = load(src + kx + v * VW);
#pragma GCC unroll 16
        for (int c = 0; c < NC; ++c) {
          const vf s = splat(wp[c]);
#pragma GCC unroll 8
          for (int v = 0; v < NX; ++v) acc[c][v] = fma_v(s, in[v], acc[c][v]);
        }
      }
    }
  }
#pragma GCC unroll 16
  for (int c = 0; c < NC; ++c) {
#pragma GCC unroll 8
    for (int v = 0; v < NX; ++v) store(out + c * out_lp + v * VW, kTanh ? tanh_v(acc[c][v]) : acc[c][v]);
  }
}

// Channels [c0, c0 + NC) of one output row over columns [0, xend), xend a
// multiple of VW: tiles of NX vectors, then single vectors.
template <int NC, int K, bool kTanh>
void row_channels(const float* const* rows, size_t lp, int cin, const float* w, int cout, const float* bias,
                  float* out, size_t out_lp, int xend) {
  constexpr int NX = nx_for(NC);
  const float* r[K];
  int x = 0;
  for (; x + NX * VW <= xend; x += NX * VW) {
    for (int ky = 0; ky < K; ++ky) r[ky] = rows[ky] + x;
    tile<NC, NX, K, kTanh>(r, lp, cin, w, cout, bias, out + x, out_lp);
  }
  for (; x < xend; x += VW) {
    for (int ky = 0; ky < K; ++ky) r[ky] = rows[ky] + x;
    tile<NC, 1, K, kTanh>(r, lp, cin, w, cout, bias, out + x, out_lp);
  }
}

template <int K, bool kTanh>
void row_k(const float* const* rows, size_t lp, const PackedConv& L, float* out, size_t out_lp, int xend) {
  // Split the output channels into equal chunks of at most kMaxNC.
  const int chunks = ceil_div(L.out_channels, kMaxNC);
  for (int i = 0, c0 = 0; i < chunks; ++i) {
    const int c1 = int(int64_t(L.out_channels) * (i + 1) / chunks);
    const float* w = L.weight + c0;
    const float* b = L.bias + c0;
    float* o = out + c0 * out_lp;
    switch (c1 - c0) {
#define ESPCN_CASE(n) \
  case n: if (n <= kMaxNC) row_channels<(n <= kMaxNC ? n : 1), K, kTanh>(rows, lp, L.in_channels, w, L.out_channels, b, o, out_lp, xend); break;
      ESPCN_CASE(1) ESPCN_CASE(2) ESPCN_CASE(3) ESPCN_CASE(4)
      ESPCN_CASE(5) ESPCN_CASE(6) ESPCN_CASE(7) ESPCN_CASE(8)
#undef ESPCN_CASE
    }
    c0 = c1;
  }
}

template <bool kTanh>
void conv_row_act(const float* const* rows, size_t lp, const PackedConv& L, float* out, size_t out_lp, int xend) {
  switch (L.kernel) {
    case 1: row_k<1, kTanh>(rows, lp, L, out, out_lp, xend); break;
    case 3: row_k<3, kTanh>(rows, lp, L, out, out_lp, xend); break;
    case 5: row_k<5, kTanh>(rows, lp, L, out, out_lp, xend); break;
    case 7: row_k<7, kTanh>(rows, lp, L, out, out_lp, xend); break;
  }
}

// One output row of all channels over columns [0, xend). rows[ky] point at
// channel 0, column -K/2 of the input rows.
void conv_row(const float* const* rows, size_t lp, const PackedConv& L, float* out, size_t out_lp, int xend,
              bool tanh) {
  if (tanh) conv_row_act<true>(rows, lp, L, out, out_lp, xend);
  else conv_row_act<false>(rows, lp, L, out, out_lp, xend);
}

// A ring of `n` rows of `channels` planar channel rows, each with `pad` zero
// columns on the left and room for the vectors' overhang on the right.
struct Ring {
  float* base;
  int n, channels, pad;
  size_t lp;                // floats per channel row
  int last = -(1 << 30);    // last image row written
  size_t slot_floats() const { return lp * channels; }
  float* slot(int row) const { return base + ring_slot(row, n) * slot_floats(); }
  // Channel 0, column 0 of `row`.
  float* at(int row) const { return slot(row) + pad; }
  size_t floats() const { return size_t(n) * slot_floats(); }
};

// Floats per channel row: `pad` columns, the row rounded up to whole vectors,
// and what the widest kernel reading it may touch beyond that.
size_t row_floats(int w, int pad) { return size_t(pad) + ceil_div(w, VW) * VW + pad + VW; }

void zero(float* p, size_t n) {
  for (size_t i = 0; i < n; ++i) p[i] = 0.0f;
}

void ensure_input(Ring& in, const float* x, int h, int w, int upto) {
  while (in.last < upto) {
    const int y = ++in.last;
    if (y < 0 || y >= h) {
      zero(in.slot(y), in.slot_floats());
      continue;
    }
    for (int c = 0; c < in.channels; ++c) {
      const float* src = x + (size_t(c) * h + y) * w;
      float* dst = in.at(y) + c * in.lp;
      for (int i = 0; i < w; ++i) dst[i] = src[i];
    }
  }
}

// Compute rows of `dst` (a ring) up to `upto` from the ring `src` below it,
// with tanh; the columns right of the image are zeroed again for the padding
// of the next layer.
template <typename EnsureSrc>
void ensure_layer(Ring& dst, const Ring& src, const PackedConv& L, int h, int w, int upto, EnsureSrc ensure_src) {
  const int pad = L.kernel / 2;
  const int xend = ceil_div(w, VW) * VW;
  const float* rows[kMaxKernel];
  while (dst.last < upto) {
    const int y = ++dst.last;
    if (y < 0 || y >= h) {
      zero(dst.slot(y), dst.slot_floats());
      continue;
    }
    ensure_src(y + pad);
    for (int ky = 0; ky < L.kernel; ++ky) rows[ky] = src.at(y - pad + ky) - pad;
    float* out = dst.at(y);
    conv_row(rows, src.lp, L, out, dst.lp, xend, true);
    for (int c = 0; c < L.out_channels; ++c) zero(out + c * dst.lp + w, dst.lp - dst.pad - w);
  }
}

// Store one conv output row (planar, `lp` floats per channel) through the
// pixel shuffle into the (C, H*r, W*r) planes of one image.
void store_pixel_shuffle(const float* row, size_t lp, int cout, int y, int h, int w, int r, bool clamp,
                         float* out) {
  const int rr = r * r;
  for (int c = 0; c < cout; ++c) {
    float* dst = out + pixel_shuffle_offset(0, c, y, 0, r, cout / rr, h, w);
    const float* src = row + c * lp;
    if (clamp) {
      for (int x = 0; x < w; ++x) dst[x * r] = src[x] < 0.0f ? 0.0f : (src[x] > 1.0f ? 1.0f : src[x]);
    } else {
      for (int x = 0; x < w; ++x) dst[x * r] = src[x];
    }
  }
}

void store_planar(const float* row, size_t lp, int cout, int y, int h, int w, float* out) {
  for (int c = 0; c < cout; ++c) {
    float* dst = out + (size_t(c) * h + y) * w;
    const float* src = row + c * lp;
    for (int x = 0; x < w; ++x) dst[x] = src[x];
  }
}

float* align64(float* p) {
  return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t(63));
}

// ---- single layer ----------------------------------------------------------

size_t conv_scratch(const PackedConv& L, int w) {
  const int pad = L.kernel / 2;
  return size_t(L.kernel) * L.in_channels * row_floats(w, pad) + size_t(L.out_channels) * row_floats(w, 0) + 64;
}

void conv(const PackedConv& L, const ConvJob& job, float* scratch) {
  const int pad = L.kernel / 2, w = job.w, h = job.h;
  const int xend = ceil_div(w, VW) * VW;
  float* base = align64(scratch);
  Ring in{base, L.kernel, L.in_channels, pad, row_floats(w, pad)};
  zero(base, in.floats());
  float* row = base + in.floats();
  const size_t row_lp = row_floats(w, 0);
  in.last = job.y0 - pad - 1;
  const float* rows[kMaxKernel];
  for (int y = job.y0; y < job.y1; ++y) {
    ensure_input(in, job.x, h, w, y + pad);
    for (int ky = 0; ky < L.kernel; ++ky) rows[ky] = in.at(y - pad + ky) - pad;
    conv_row(rows, in.lp, L, row, row_lp, xend, job.epilogue == Epilogue::kTanh);
    if (job.epilogue == Epilogue::kTanh) {
      store_planar(row, row_lp, L.out_channels, y, h, w, job.out);
    } else {
      store_pixel_shuffle(row, row_lp, L.out_channels, y, h, w, job.scale, job.clamp, job.out);
    }
  }
}

// ---- the whole network -------------------------------------------------------

size_t espcn_scratch(const PackedConv& l1, const PackedConv& l2, const PackedConv& l3, int w) {
  return size_t(l1.kernel) * l1.in_channels * row_floats(w, l1.kernel / 2) +
         size_t(l2.kernel) * l1.out_channels * row_floats(w, l2.kernel / 2) +
         size_t(l3.kernel) * l2.out_channels * row_floats(w, l3.kernel / 2) +
         size_t(l3.out_channels) * row_floats(w, 0) + 64;
}

void espcn(const PackedConv& l1, const PackedConv& l2, const PackedConv& l3, const ConvJob& job,
           float* scratch) {
  const int w = job.w, h = job.h;
  const int xend = ceil_div(w, VW) * VW;
  const int p1 = l1.kernel / 2, p2 = l2.kernel / 2, p3 = l3.kernel / 2;
  float* base = align64(scratch);
  zero(base, espcn_scratch(l1, l2, l3, w) - 64);
  // Layer n reads `kernel` rows of the ring below it at once.
  Ring in{base, l1.kernel, l1.in_channels, p1, row_floats(w, p1)};
  Ring a1{in.base + in.floats(), l2.kernel, l1.out_channels, p2, row_floats(w, p2)};
  Ring a2{a1.base + a1.floats(), l3.kernel, l2.out_channels, p3, row_floats(w, p3)};
  float* row = a2.base + a2.floats();
  const size_t row_lp = row_floats(w, 0);
  // The first row each ring will hold for output row y0.
  a2.last = job.y0 - p3 - 1;
  a1.last = a2.last + 1 - p2 - 1;
  in.last = a1.last + 1 - p1 - 1;
  auto ensure_in = [&](int upto) { ensure_input(in, job.x, h, w, upto); };
  auto ensure_a1 = [&](int upto) { ensure_layer(a1, in, l1, h, w, upto, ensure_in); };
  const float* rows[kMaxKernel];
  for (int y = job.y0; y < job.y1; ++y) {
    ensure_layer(a2, a1, l2, h, w, y + p3, ensure_a1);
    for (int ky = 0; ky < l3.kernel; ++ky) rows[ky] = a2.at(y - p3 + ky) - p3;
    conv_row(rows, a2.lp, l3, row, row_lp, xend, false);
    store_pixel_shuffle(row, row_lp, l3.out_channels, y, h, w, job.scale, job.clamp, job.out);
  }
}

void tanh_array(const float* x, float* y, size_t n) {
  size_t i = 0;
  for (; i + VW <= n; i += VW) store(y + i, tanh_v(load(x + i)));
  if (i < n) {
    float tmp[VW] = {};
    for (size_t k = i; k < n; ++k) tmp[k - i] = x[k];
    const vf t = tanh_v(load(tmp));
    for (size_t k = i; k < n; ++k) y[k] = t[k - i];
  }
}

}  // namespace

const Kernels* kernels() {
  static const Kernels k{ESPCN_ISA_NAME, VW, kMaxKernel, conv_scratch, conv, espcn_scratch, espcn, tanh_array};
  return &k;
}

}  // namespace espcn::cpu::ESPCN_ISA
