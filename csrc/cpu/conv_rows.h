// The CPU convolution kernels, written once with GCC vector extensions and
// compiled once per instruction set by isa_*.cpp, each of which defines
//   ESPCN_ISA  the namespace of this copy (avx512, avx2, portable)
//   ESPCN_VW   floats per vector (16, 8, 4)
//   ESPCN_M    pixels per register tile with two output vectors
// and includes this file after its `#pragma GCC target`. Everything here has
// internal linkage, so no inline function compiled for one instruction set
// can be picked by the linker for another.
//
// Layout: an image runs down a strip a row at a time. Inputs and
// intermediates live in ring buffers of channels-last rows with a zero border
// ("same" padding), so a pixel's channels are contiguous and one vector FMA
// updates VW output channels of one pixel: the register tile is M pixels x
// 2 vectors of output channels, and K = k*k*in_channels is the inner loop.

#ifndef ESPCN_ISA
#error "define ESPCN_ISA, ESPCN_VW and ESPCN_M before including conv_rows.h"
#endif

namespace espcn::cpu::ESPCN_ISA {
namespace {

constexpr int VW = ESPCN_VW;
constexpr int kMaxKernel = 15;  // the bindings refuse larger kernels
constexpr int M2 = ESPCN_M;      // pixels per tile with 2 vectors of channels
constexpr int M1 = 2 * ESPCN_M;  // pixels per tile with 1 vector

typedef float vf __attribute__((vector_size(VW * 4)));
typedef float vf_u __attribute__((vector_size(VW * 4), aligned(4)));
typedef int32_t vi __attribute__((vector_size(VW * 4)));

inline vf load(const float* p) { return *reinterpret_cast<const vf_u*>(p); }
inline void store(float* p, vf v) { *reinterpret_cast<vf_u*>(p) = v; }
// s - 0 is exactly s (unlike 0 + s for s = -0), so this folds to a plain broadcast.
inline vf splat(float s) { return s - vf{}; }

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
  const vf large = 1.0f - 2.0f / (exp_nonneg(z) + 1.0f);
  vf r = ax < 0.625f ? small : large;
  r = (vf)((vi)r | sign);
  return x == x ? r : x;
}

// One register tile: M pixels starting at output column x0, NB vectors of
// output channels, summed over ky, kx, ci. rows[ky] is the padded input row
// (column -pad at offset 0), `stride` floats between its pixels. The weights
// `w` point at this tile's first output channel: [ky][kx][ci][co_padded].
template <int NB, int M, bool kTanh>
inline void tile(const float* const* rows, int stride, int cin, int k, const float* w, int cop,
                 const float* bias, int x0, float* out, int out_stride) {
  vf acc[M][NB];
#pragma GCC unroll 8
  for (int j = 0; j < NB; ++j) {
    const vf b = load(bias + j * VW);
#pragma GCC unroll 32
    for (int m = 0; m < M; ++m) acc[m][j] = b;
  }
  for (int ky = 0; ky < k; ++ky) {
    for (int kx = 0; kx < k; ++kx) {
      const float* src = rows[ky] + (x0 + kx) * stride;
      const float* wp = w + (ky * k + kx) * cin * cop;
      for (int ci = 0; ci < cin; ++ci, wp += cop) {
        vf wv[NB];
#pragma GCC unroll 8
        for (int j = 0; j < NB; ++j) wv[j] = load(wp + j * VW);
#pragma GCC unroll 32
        for (int m = 0; m < M; ++m) {
          const vf s = splat(src[m * stride + ci]);
#pragma GCC unroll 8
          for (int j = 0; j < NB; ++j) acc[m][j] += s * wv[j];
        }
      }
    }
  }
#pragma GCC unroll 32
  for (int m = 0; m < M; ++m) {
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) {
      vf v = acc[m][j];
      if (kTanh) v = tanh_v(v);
      store(out + (x0 + m) * out_stride + j * VW, v);
    }
  }
}

// One output row, all padded output channels: out[x * out_stride + c].
template <bool kTanh>
void conv_row(const float* const* rows, int stride, const PackedConv& L, int w, float* out,
              int out_stride) {
  const int cop = L.out_channels_padded;
  int c = 0;
  for (; c + 2 * VW <= cop; c += 2 * VW) {
    const float* wc = L.weight + c;
    int x = 0;
    for (; x + M2 <= w; x += M2)
      tile<2, M2, kTanh>(rows, stride, L.in_channels, L.kernel, wc, cop, L.bias + c, x, out + c, out_stride);
    for (; x < w; ++x)
      tile<2, 1, kTanh>(rows, stride, L.in_channels, L.kernel, wc, cop, L.bias + c, x, out + c, out_stride);
  }
  for (; c < cop; c += VW) {
    const float* wc = L.weight + c;
    int x = 0;
    for (; x + M1 <= w; x += M1)
      tile<1, M1, kTanh>(rows, stride, L.in_channels, L.kernel, wc, cop, L.bias + c, x, out + c, out_stride);
    for (; x < w; ++x)
      tile<1, 1, kTanh>(rows, stride, L.in_channels, L.kernel, wc, cop, L.bias + c, x, out + c, out_stride);
  }
}

// A ring of `n` channels-last rows, each `pad` zero pixels wider on both sides.
struct Ring {
  float* base;
  int n, pad, pixels, channels;  // pixels = w + 2 * pad
  int last = -1 << 30;           // last row written
  size_t slot_floats() const { return size_t(pixels) * channels; }
  float* slot(int row) const { return base + ring_slot(row, n) * slot_floats(); }
  float* interior(int row) const { return slot(row) + pad * channels; }
  static size_t floats(int n, int w, int pad, int channels) { return size_t(n) * (w + 2 * pad) * channels; }
};

// Copy row y of a planar (C, H, W) image into a channels-last ring slot.
void load_input_row(const Ring& ring, const float* x, int cin, int h, int w, int y) {
  float* dst = ring.interior(y);
  if (cin == 1) {
    const float* src = x + size_t(y) * w;
    for (int i = 0; i < w; ++i) dst[i] = src[i];
    return;
  }
  for (int c = 0; c < cin; ++c) {
    const float* src = x + (size_t(c) * h + y) * w;
    for (int i = 0; i < w; ++i) dst[i * cin + c] = src[i];
  }
}

void zero_row(const Ring& ring, int row) {
  float* s = ring.slot(row);
  for (size_t i = 0; i < ring.slot_floats(); ++i) s[i] = 0.0f;
}

// Store one conv output row (channels-last, `cop` stride) through the pixel
// shuffle into the (C, H*r, W*r) planes of one image.
void store_pixel_shuffle(const float* row, int cop, int cout, int y, int h, int w, int r, bool clamp,
                         float* out) {
  const int rr = r * r;
  for (int c = 0; c < cout; ++c) {
    const int j = c % r;
    float* dst = out + pixel_shuffle_offset(0, c, y, 0, r, cout / rr, h, w) - j;
    for (int x = 0; x < w; ++x) {
      float v = row[x * cop + c];
      if (clamp) v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
      dst[x * r + j] = v;
    }
  }
}

void store_planar(const float* row, int cop, int cout, int y, int h, int w, float* out) {
  for (int c = 0; c < cout; ++c) {
    float* dst = out + (size_t(c) * h + y) * w;
    for (int x = 0; x < w; ++x) dst[x] = row[x * cop + c];
  }
}

void ensure_input(Ring& in, const float* x, int cin, int h, int w, int upto) {
  while (in.last < upto) {
    const int y = ++in.last;
    if (y < 0 || y >= h) zero_row(in, y);
    else load_input_row(in, x, cin, h, w, y);
  }
}

// Compute rows of `dst` (a ring) up to `upto` from the ring `src` below it.
template <typename EnsureSrc>
void ensure_layer(Ring& dst, const Ring& src, const PackedConv& L, int h, int w, int upto,
                  EnsureSrc ensure_src) {
  const int pad = L.kernel / 2;
  const float* rows[kMaxKernel];
  while (dst.last < upto) {
    const int y = ++dst.last;
    if (y < 0 || y >= h) {
      zero_row(dst, y);
      continue;
    }
    ensure_src(y + pad);
    for (int ky = 0; ky < L.kernel; ++ky) rows[ky] = src.slot(y - pad + ky);
    conv_row<true>(rows, src.channels, L, w, dst.interior(y), dst.channels);
  }
}

float* align64(float* p) {
  return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t(63));
}

// ---- single layer ----------------------------------------------------------

size_t conv_scratch(const PackedConv& L, int w) {
  return Ring::floats(L.kernel, w, L.kernel / 2, L.in_channels) + size_t(w) * L.out_channels_padded + 64;
}

void conv(const PackedConv& L, const ConvJob& job, float* scratch) {
  const int pad = L.kernel / 2, w = job.w, h = job.h;
  float* base = align64(scratch);
  Ring in{base, L.kernel, pad, w + 2 * pad, L.in_channels};
  const size_t in_floats = Ring::floats(L.kernel, w, pad, L.in_channels);
  for (size_t i = 0; i < in_floats; ++i) base[i] = 0.0f;
  float* row = base + in_floats;
  in.last = job.y0 - pad - 1;
  const float* rows[kMaxKernel];
  for (int y = job.y0; y < job.y1; ++y) {
    ensure_input(in, job.x, L.in_channels, h, w, y + pad);
    for (int ky = 0; ky < L.kernel; ++ky) rows[ky] = in.slot(y - pad + ky);
    if (job.epilogue == Epilogue::kTanh) {
      conv_row<true>(rows, in.channels, L, w, row, L.out_channels_padded);
      store_planar(row, L.out_channels_padded, L.out_channels, y, h, w, job.out);
    } else {
      conv_row<false>(rows, in.channels, L, w, row, L.out_channels_padded);
      store_pixel_shuffle(row, L.out_channels_padded, L.out_channels, y, h, w, job.scale, job.clamp, job.out);
    }
  }
}

// ---- the whole network -------------------------------------------------------

size_t espcn_scratch(const PackedConv& l1, const PackedConv& l2, const PackedConv& l3, int w) {
  return Ring::floats(l1.kernel, w, l1.kernel / 2, l1.in_channels) +
         Ring::floats(l2.kernel, w, l2.kernel / 2, l1.out_channels_padded) +
         Ring::floats(l3.kernel, w, l3.kernel / 2, l2.out_channels_padded) +
         size_t(w) * l3.out_channels_padded + 64;
}

void espcn(const PackedConv& l1, const PackedConv& l2, const PackedConv& l3, const ConvJob& job,
           float* scratch) {
  const int w = job.w, h = job.h;
  const int p1 = l1.kernel / 2, p2 = l2.kernel / 2, p3 = l3.kernel / 2;
  float* base = align64(scratch);
  const size_t total = espcn_scratch(l1, l2, l3, w) - 64;
  for (size_t i = 0; i < total; ++i) base[i] = 0.0f;
  // Ring sizes: layer n needs `kernel` rows of the ring below it at once.
  Ring in{base, l1.kernel, p1, w + 2 * p1, l1.in_channels};
  Ring a1{in.base + Ring::floats(l1.kernel, w, p1, l1.in_channels), l2.kernel, p2, w + 2 * p2,
          l1.out_channels_padded};
  Ring a2{a1.base + Ring::floats(l2.kernel, w, p2, l1.out_channels_padded), l3.kernel, p3, w + 2 * p3,
          l2.out_channels_padded};
  float* row = a2.base + Ring::floats(l3.kernel, w, p3, l2.out_channels_padded);
  // First rows each ring will hold for output row y0.
  a2.last = job.y0 - p3 - 1;
  a1.last = a2.last + 1 - p2 - 1;
  in.last = a1.last + 1 - p1 - 1;
  auto ensure_in = [&](int upto) { ensure_input(in, job.x, l1.in_channels, h, w, upto); };
  auto ensure_a1 = [&](int upto) { ensure_layer(a1, in, l1, h, w, upto, ensure_in); };
  const float* rows[kMaxKernel];
  for (int y = job.y0; y < job.y1; ++y) {
    ensure_layer(a2, a1, l2, h, w, y + p3, ensure_a1);
    for (int ky = 0; ky < l3.kernel; ++ky) rows[ky] = a2.slot(y - p3 + ky);
    conv_row<false>(rows, a2.channels, l3, w, row, l3.out_channels_padded);
    store_pixel_shuffle(row, l3.out_channels_padded, l3.out_channels, y, h, w, job.scale, job.clamp, job.out);
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
  static const Kernels k{ESPCN_ISA_NAME, VW, conv_scratch, conv, espcn_scratch, espcn, tanh_array};
  return &k;
}

}  // namespace espcn::cpu::ESPCN_ISA
