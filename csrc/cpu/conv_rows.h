// The CPU convolution kernels, written once with GCC vector extensions and
// compiled once per instruction set by isa_*.cpp, each of which defines
//   ESPCN_ISA     the namespace of this copy (avx512, avx2, portable)
//   ESPCN_VW      floats per vector (16, 8, 4)
//   ESPCN_ACC     accumulator vectors in a register tile (16 of 32 zmm: more
//                 made GCC shuffle registers and was no faster; 12 of 16 ymm/xmm)
//   ESPCN_MAXNC   output channels in a register tile (8; 4)
//   ESPCN_FMA512 / ESPCN_FMA256  use these FMA intrinsics (portable: a * b + c)
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
#error "define ESPCN_ISA, ESPCN_VW, ESPCN_ACC and ESPCN_MAXNC before including conv_rows.h"
#endif

namespace espcn::cpu::ESPCN_ISA {
namespace {

constexpr int VW = ESPCN_VW;
constexpr int kAcc = ESPCN_ACC;
constexpr int kMaxNC = ESPCN_MAXNC;
constexpr int kMaxKernel = 7;  // the bindings refuse larger kernels

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
  const vf r = (vf)_mm512_maskz_rcp14_ps(__mmask16(0xffff), (__m512)d);
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
    // One instantiation per chunk size; sizes above kMaxNC never occur here
    // but must still compile, so they map to 1.
    switch (c1 - c0) {
#define ESPCN_CASE(n)                                                                                \
  case n:                                                                                            \
    row_channels<(n <= kMaxNC ? n : 1), K, kTanh>(rows, lp, L.in_channels, w, L.out_channels, b, o, \
                                                  out_lp, xend);                                     \
    break;
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
size_t row_floats(int w, int pad) { return size_t(pad) + ceil_div(w, 2 * VW) * 2 * VW + 2 * VW + pad; }

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

// ---- Winograd F(2x2, 3x3) -----------------------------------------------------
// Layer 2 (64 -> 32 channels, 3x3) is 80% of the work. Winograd's F(2x2, 3x3)
// makes each 2x2 output tile from a 4x4 input tile with 16 multiplies per
// channel pair instead of 36: the transformed input V = B^T d B, the weights
// U = G g G^T (transformed once per call, in the bindings), 16 small GEMMs
// M = U V over the input channels (the register tiles above, K = 1), and
// Y = A^T M A. Rows come in pairs; columns in blocks of kWinoTiles tiles.
// In fp32 its error stays near 1e-7 (tested against float64).

constexpr int kWinoTiles = 32;  // two vectors of tiles for the GEMM; 16 planes of V stay near L1 (measured: 64 and 16 are slower)

// Floats between the 16 planes of V (or M): padded by one cache line so that
// the 16 streams written (read) together don't all fall in one L1 set.
size_t wino_plane(int channels) { return size_t(channels) * kWinoTiles + 16; }

template <size_t... I>
constexpr vi lanes_mask(int mul, int add, std::index_sequence<I...>) {
  return vi{int(I * mul + add)...};
}
template <size_t... I>
constexpr vi zip_mask(int half, std::index_sequence<I...>) {
  return vi{int((I % 2 ? VW : 0) + I / 2 + half)...};
}
inline vf even_lanes(vf a, vf b) { return __builtin_shuffle(a, b, lanes_mask(2, 0, std::make_index_sequence<VW>())); }
inline vf odd_lanes(vf a, vf b) { return __builtin_shuffle(a, b, lanes_mask(2, 1, std::make_index_sequence<VW>())); }
inline vf zip_lo(vf a, vf b) { return __builtin_shuffle(a, b, zip_mask(0, std::make_index_sequence<VW>())); }
inline vf zip_hi(vf a, vf b) { return __builtin_shuffle(a, b, zip_mask(VW / 2, std::make_index_sequence<VW>())); }

size_t wino_scratch(const PackedConv& L) { return 16 * (wino_plane(L.in_channels) + wino_plane(L.out_channels)); }

// Output rows y and y + 1 (out0, out1: channel 0, column 0) from input rows
// y - 1 .. y + 2 (r[0..3]: channel 0, column 0), with bias and tanh.
void wino_pair(const float* const* r, size_t lp, const PackedConv& L, float* out0, float* out1, size_t out_lp,
               int w, float* V, float* M) {
  const int cin = L.in_channels, cout = L.out_channels;
  const int tiles = ceil_div(w, 2);
  for (int t0 = 0; t0 < tiles; t0 += kWinoTiles) {
    const int nv = ceil_div(tiles - t0 < kWinoTiles ? tiles - t0 : kWinoTiles, VW);
    // V[xi][ci][t] = (B^T d B)[xi] of the 4x4 input tile t of channel ci.
    for (int ci = 0; ci < cin; ++ci) {
      for (int v = 0; v < nv; ++v) {
        const int col = 2 * (t0 + v * VW) - 1;
        vf s[4][4];
        for (int k = 0; k < 4; ++k) {
          const float* p = r[k] + ci * lp + col;
          const vf a = load(p), b = load(p + VW), c = load(p + 2), d = load(p + 2 + VW);
          const vf c0 = even_lanes(a, b), c1 = odd_lanes(a, b), c2 = even_lanes(c, d), c3 = odd_lanes(c, d);
          s[k][0] = c0 - c2;
          s[k][1] = c1 + c2;
          s[k][2] = c2 - c1;
          s[k][3] = c1 - c3;
        }
        float* dst = V + size_t(ci) * kWinoTiles + v * VW;
        const size_t xi_stride = wino_plane(cin);
        for (int j = 0; j < 4; ++j) {
          store(dst + (0 * 4 + j) * xi_stride, s[0][j] - s[2][j]);
          store(dst + (1 * 4 + j) * xi_stride, s[1][j] + s[2][j]);
          store(dst + (2 * 4 + j) * xi_stride, s[2][j] - s[1][j]);
          store(dst + (3 * 4 + j) * xi_stride, s[1][j] - s[3][j]);
        }
      }
    }
    // M[xi] = U[xi] V[xi]: a 1x1 "convolution" over the tiles of the block.
    for (int xi = 0; xi < 16; ++xi) {
      const PackedConv gemm{L.winograd + size_t(xi) * cin * cout, L.zero_bias, cin, cout, 1, nullptr, nullptr};
      const float* rows[1] = {V + xi * wino_plane(cin)};
      conv_row_act<false>(rows, kWinoTiles, gemm, M + xi * wino_plane(cout), kWinoTiles, nv * VW);
    }
    // Y = A^T M A, bias, tanh; even and odd output columns zipped back together.
    for (int co = 0; co < cout; ++co) {
      const vf bias = splat(L.bias[co]);
      for (int v = 0; v < nv; ++v) {
        const float* src = M + size_t(co) * kWinoTiles + v * VW;
        const size_t xi_stride = wino_plane(cout);
        vf m[4][4];
        for (int i = 0; i < 4; ++i)
          for (int j = 0; j < 4; ++j) m[i][j] = load(src + (i * 4 + j) * xi_stride);
        vf a[2][4];
        for (int j = 0; j < 4; ++j) {
          a[0][j] = m[0][j] + m[1][j] + m[2][j];
          a[1][j] = m[1][j] - m[2][j] - m[3][j];
        }
        const int col = 2 * (t0 + v * VW);
        float* outs[2] = {out0 + co * out_lp + col, out1 + co * out_lp + col};
        for (int i = 0; i < 2; ++i) {
          const vf even = tanh_v(a[i][0] + a[i][1] + a[i][2] + bias);
          const vf odd = tanh_v(a[i][1] - a[i][2] - a[i][3] + bias);
          store(outs[i], zip_lo(even, odd));
          store(outs[i] + VW, zip_hi(even, odd));
        }
      }
    }
  }
}

// Like ensure_layer, for a 3x3 layer with Winograd weights: rows in pairs,
// so `dst` and `src` rings hold 4 rows.
template <typename EnsureSrc>
void ensure_layer_wino(Ring& dst, const Ring& src, const PackedConv& L, int h, int w, int upto, float* V, float* M,
                       EnsureSrc ensure_src) {
  while (dst.last < upto) {
    const int y = dst.last + 1;
    dst.last = y + 1;
    if (y + 1 < 0 || y >= h) {
      zero(dst.slot(y), dst.slot_floats());
      zero(dst.slot(y + 1), dst.slot_floats());
      continue;
    }
    ensure_src(y + 2);
    const float* rows[4] = {src.at(y - 1), src.at(y), src.at(y + 1), src.at(y + 2)};
    wino_pair(rows, src.lp, L, dst.at(y), dst.at(y + 1), dst.lp, w, V, M);
    for (int k = 0; k < 2; ++k) {
      if (y + k < 0 || y + k >= h) {
        zero(dst.slot(y + k), dst.slot_floats());
        continue;
      }
      float* out = dst.at(y + k);
      for (int c = 0; c < L.out_channels; ++c) zero(out + c * dst.lp + w, dst.lp - dst.pad - w);
    }
  }
}

// The pixel shuffle on vectors: channels j = 0 .. R-1 of one HR row
// interleave as [c0[0] c1[0] .. c{R-1}[0] c0[1] ..]. Lane l of output vector
// K holds element p = K VW + l: channel p % R, pixel p / R. The vector is
// built one channel at a time: step S (1 .. R-1) shuffles channel S into the
// lanes the steps before it filled (step 1 takes channel 0 as its first
// operand), one two-source permute each.
constexpr int interleave_lane(int r, int k, int s, int l) {
  const int p = k * VW + l, ch = p % r, px = p / r;
  if (s == 1) return ch == 0 ? px : ch == 1 ? VW + px : 0;
  return ch == s ? VW + px : l;
}
template <size_t... I>
constexpr vi interleave_mask(int r, int k, int s, std::index_sequence<I...>) {
  return vi{interleave_lane(r, k, s, int(I))...};
}
template <int R, int K, int... S>
inline vf interleaved(const vf* ch, std::integer_sequence<int, S...>) {
  vf t = ch[0];
  ((t = __builtin_shuffle(t, ch[S + 1], interleave_mask(R, K, S + 1, std::make_index_sequence<VW>()))), ...);
  return t;
}
template <int R, int... K>
inline void store_interleaved(const vf* ch, float* dst, std::integer_sequence<int, K...>) {
  (store(dst + K * VW, interleaved<R, K>(ch, std::make_integer_sequence<int, R - 1>())), ...);
}
inline float clamp01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }
inline vf clamp01(vf v) {  // NaN stays NaN, as in the scalar form
  v = v < 0.0f ? splat(0.0f) : v;
  return v > 1.0f ? splat(1.0f) : v;
}

// Channels [c0, c0 + R) of a row: one HR row, VW pixels a step, then the
// columns left one by one.
template <int R>
void store_shuffled_row(const float* row, size_t lp, int c0, int w, bool clamp, float* dst) {
  int x = 0;
  for (; x + VW <= w; x += VW) {
    vf ch[R];
#pragma GCC unroll 4
    for (int j = 0; j < R; ++j) {
      ch[j] = load(row + (c0 + j) * lp + x);
      if (clamp) ch[j] = clamp01(ch[j]);
    }
    store_interleaved<R>(ch, dst + x * R, std::make_integer_sequence<int, R>());
  }
  for (; x < w; ++x)
    for (int j = 0; j < R; ++j) {
      const float v = row[(c0 + j) * lp + x];
      dst[x * R + j] = clamp ? clamp01(v) : v;
    }
}

// Store one conv output row (planar, `lp` floats per channel) through the
// pixel shuffle into the (C, H*r, W*r) planes of one image; the rows' padding
// lets whole vectors be read past w.
void store_pixel_shuffle(const float* row, size_t lp, int cout, int y, int h, int w, int r, bool clamp,
                         float* out) {
  const int rr = r * r;
  if (r >= 2 && r <= 4) {
    for (int c0 = 0; c0 < cout; c0 += r) {  // channels c0 .. c0 + r - 1 make one HR row
      float* dst = out + pixel_shuffle_offset(0, c0, y, 0, r, cout / rr, h, w);
      if (r == 2) store_shuffled_row<2>(row, lp, c0, w, clamp, dst);
      else if (r == 3) store_shuffled_row<3>(row, lp, c0, w, clamp, dst);
      else store_shuffled_row<4>(row, lp, c0, w, clamp, dst);
    }
    return;
  }
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

// Layer 2 runs as Winograd when it is a 3x3 layer with transformed weights.
bool use_winograd(const PackedConv& l2) { return l2.kernel == 3 && l2.winograd != nullptr; }

// Rows of layer 2's output that layer 3 reads at once: its kernel's, and one
// more when Winograd computes them in pairs (a pair can run one row ahead).
int layer2_ring_rows(const PackedConv& l2, const PackedConv& l3) {
  return use_winograd(l2) ? l3.kernel + 1 : l3.kernel;
}

size_t espcn_scratch(const PackedConv& l1, const PackedConv& l2, const PackedConv& l3, int w) {
  const bool wino = use_winograd(l2);
  return size_t(l1.kernel) * l1.in_channels * row_floats(w, l1.kernel / 2) +
         size_t(wino ? 4 : l2.kernel) * l1.out_channels * row_floats(w, l2.kernel / 2) +
         size_t(layer2_ring_rows(l2, l3)) * l2.out_channels * row_floats(w, l3.kernel / 2) +
         size_t(l3.out_channels) * row_floats(w, 0) + (wino ? wino_scratch(l2) : 0) + 64;
}

void espcn(const PackedConv& l1, const PackedConv& l2, const PackedConv& l3, const ConvJob& job,
           float* scratch) {
  const int w = job.w, h = job.h;
  const int xend = ceil_div(w, VW) * VW;
  const int p1 = l1.kernel / 2, p2 = l2.kernel / 2, p3 = l3.kernel / 2;
  const bool wino = use_winograd(l2);
  float* base = align64(scratch);
  zero(base, espcn_scratch(l1, l2, l3, w) - 64);
  // Layer n reads `kernel` rows of the ring below it at once (Winograd layer 2: 4).
  Ring in{base, l1.kernel, l1.in_channels, p1, row_floats(w, p1)};
  Ring a1{in.base + in.floats(), wino ? 4 : l2.kernel, l1.out_channels, p2, row_floats(w, p2)};
  Ring a2{a1.base + a1.floats(), layer2_ring_rows(l2, l3), l2.out_channels, p3, row_floats(w, p3)};
  float* row = a2.base + a2.floats();
  const size_t row_lp = row_floats(w, 0);
  float* V = row + size_t(l3.out_channels) * row_lp;
  float* M = V + 16 * wino_plane(l2.in_channels);
  // The first row each ring computes for output row y0. Winograd pairs are
  // always rows (2k, 2k + 1), wherever the strip starts, so that results do
  // not depend on the strips (and so on the thread count).
  int first = job.y0 - p3;
  if (wino) first -= first & 1;
  a2.last = first - 1;
  a1.last = first - p2 - 1;
  in.last = first - p2 - p1 - 1;
  auto ensure_in = [&](int upto) { ensure_input(in, job.x, h, w, upto); };
  auto ensure_a1 = [&](int upto) { ensure_layer(a1, in, l1, h, w, upto, ensure_in); };
  const float* rows[kMaxKernel];
  for (int y = job.y0; y < job.y1; ++y) {
    if (wino) ensure_layer_wino(a2, a1, l2, h, w, y + p3, V, M, ensure_a1);
    else ensure_layer(a2, a1, l2, h, w, y + p3, ensure_a1);
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
