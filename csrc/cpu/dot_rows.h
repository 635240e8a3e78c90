// The whole network in bf16 or int8 on dot-product instructions: vdpbf16ps
// (AVX512-BF16: two bf16 products per 32-bit lane, float32 sums) and
// vpdpbusd (AVX512-VNNI, or AVX-VNNI on 256-bit vectors: four u8 x s8
// products per lane, int32 sums). The arithmetic is
// espcn_fast/reduced_precision.py's. Included by isa_avx512_dot.cpp and
// isa_avx_vnni*.cpp after conv_rows.h, whose vectors, rings, layer-1 input
// and pixel-shuffle store it reuses; besides conv_rows.h's macros they define
//   ESPCN_DOT_ACC        accumulator vectors of a tile (24 of 32 zmm, 12 of 16 ymm)
//   ESPCN_DOT_BF16       build the bf16 kernels too (AVX512-BF16)
//   ESPCN_VNNI_VEX       256-bit vpdpbusd in its VEX form (AVX-VNNI); without
//                        it, the EVEX form (AVX512-VNNI with AVX512-VL)
//   ESPCN_DOT_INT8_NAME  the int8 kernels' name
//
// Layout: an intermediate row holds its channels in groups of kPack (2 bf16
// or 4 u8), one 32-bit word per pixel and group, so one vector load gives VW
// pixels x kPack channels: exactly a dot instruction's operand. Weights are
// words of kPack input channels, [group][ky][kx][cout], broadcast from
// memory. Direct convolution: in int8 a dot does four multiply-adds a lane,
// four times an FMA, which leaves Winograd's transforms nothing to win.
//
// int8 activations are stored as u8 = k + 128 with k = round(127 a) (layer
// 1's channels with ranges: round(127 a / range), clamped), since vpdpbusd
// multiplies unsigned by signed bytes; the accumulator starts at
// -128 * sum(q_w) of its output channel, so that it ends at the exact
// sum(k * q_w). Padding words hold the code of 0 (0x80 bytes).

namespace espcn::cpu::ESPCN_ISA {
namespace {

constexpr int kDotAcc = ESPCN_DOT_ACC;

typedef uint32_t word;

// The few operations GCC's vector extensions do not spell: the same names at
// both widths, each one instruction.
#if defined(ESPCN_FMA512)
inline vi load_words(const word* p) { return (vi)_mm512_loadu_si512(p); }
inline void store_words(word* p, vi v) { _mm512_storeu_si512(p, (__m512i)v); }
inline vi splat_word(word w) { return (vi)_mm512_set1_epi32(int(w)); }
// x clamped to [-m, m] (m > 0): vrangeps, the smaller magnitude with x's sign, one instruction.
inline vf clamp_abs(vf x, float m) { return (vf)_mm512_range_ps((__m512)x, _mm512_set1_ps(m), 0x02); }
inline vf round_v(vf x) { return (vf)_mm512_roundscale_ps((__m512)x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// Rounded to the nearest integer (even on ties: the current rounding mode).
inline vi to_int_nearest(vf x) { return (vi)_mm512_cvtps_epi32((__m512)x); }
// p * 2^n for integral n in [-26, 26].
inline vf times_pow2(vf p, vf n) { return (vf)_mm512_scalef_ps((__m512)p, (__m512)n); }
// 1 / d to 14 bits.
inline vf recip_estimate(vf d) { return (vf)_mm512_rcp14_ps((__m512)d); }
inline vi dot_u8s8(vi acc, vi a, vi w) { return (vi)_mm512_dpbusd_epi32((__m512i)acc, (__m512i)a, (__m512i)w); }
inline vi dot_s16s16(vi acc, vi a, vi w) { return (vi)_mm512_dpwssd_epi32((__m512i)acc, (__m512i)a, (__m512i)w); }
// Four vectors of int32 in [-128, 127] -> their low bytes, in 128-bit lanes:
// pixel-major after the byte transpose below (exact: nothing saturates).
inline vi pack_bytes(vi q0, vi q1, vi q2, vi q3) {
  const __m512i a = _mm512_packs_epi32((__m512i)q0, (__m512i)q1), b = _mm512_packs_epi32((__m512i)q2, (__m512i)q3);
  return (vi)_mm512_packs_epi16(a, b);
}
inline vi shuffle_bytes(vi v, vi idx) { return (vi)_mm512_shuffle_epi8((__m512i)v, (__m512i)idx); }
inline vi max_bytes(vi a, vi b) { return (vi)_mm512_max_epi8((__m512i)a, (__m512i)b); }
#else
inline vi load_words(const word* p) { return (vi)_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline void store_words(word* p, vi v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), (__m256i)v); }
inline vi splat_word(word w) { return (vi)_mm256_set1_epi32(int(w)); }
inline vf clamp_abs(vf x, float m) {
  return (vf)_mm256_min_ps(_mm256_max_ps((__m256)x, _mm256_set1_ps(-m)), _mm256_set1_ps(m));
}
inline vf round_v(vf x) { return (vf)_mm256_round_ps((__m256)x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline vi to_int_nearest(vf x) { return (vi)_mm256_cvtps_epi32((__m256)x); }
// 2^n built in the exponent bits (no scalef before AVX-512).
inline vf times_pow2(vf p, vf n) { return p * (vf)((__builtin_convertvector(n, vi) + 127) << 23); }
// 1 / d to 12 bits (rcp_ps; the Newton step below brings it to about 2^-23).
inline vf recip_estimate(vf d) { return (vf)_mm256_rcp_ps((__m256)d); }
inline vi pack_bytes(vi q0, vi q1, vi q2, vi q3) {
  const __m256i a = _mm256_packs_epi32((__m256i)q0, (__m256i)q1), b = _mm256_packs_epi32((__m256i)q2, (__m256i)q3);
  return (vi)_mm256_packs_epi16(a, b);
}
inline vi shuffle_bytes(vi v, vi idx) { return (vi)_mm256_shuffle_epi8((__m256i)v, (__m256i)idx); }
inline vi max_bytes(vi a, vi b) { return (vi)_mm256_max_epi8((__m256i)a, (__m256i)b); }
#if defined(ESPCN_VNNI_VEX)
inline vi dot_u8s8(vi acc, vi a, vi w) { return (vi)_mm256_dpbusd_avx_epi32((__m256i)acc, (__m256i)a, (__m256i)w); }
inline vi dot_s16s16(vi acc, vi a, vi w) { return (vi)_mm256_dpwssd_avx_epi32((__m256i)acc, (__m256i)a, (__m256i)w); }
#else
inline vi dot_u8s8(vi acc, vi a, vi w) { return (vi)_mm256_dpbusd_epi32((__m256i)acc, (__m256i)a, (__m256i)w); }
inline vi dot_s16s16(vi acc, vi a, vi w) { return (vi)_mm256_dpwssd_epi32((__m256i)acc, (__m256i)a, (__m256i)w); }
#endif
#endif

// r = 1 / (exp(2y) + 1), so that tanh(y) = 1 - 2r, with |error| < 3e-7:
// exp from 2^round and a degree-5 polynomial in the remainder, one Newton
// step on the reciprocal's estimate. Enough for bf16 (2^-9) and int8 (1/254)
// storage, at half the instructions of tanh_v; the formats fold 1 - 2r into
// their rounding.
inline vf tanh_recip(vf y) {
  y = clamp_abs(y, 9.0f);
  const vf z = y * 2.88539008177792681f;  // 2y log2(e)
  const vf n = round_v(z);
  const vf f = z - n;  // exact, |f| <= 1/2
  // 2^f: a degree-5 polynomial fitted for relative error on [-1/2, 1/2]
  // (7.5e-8; in float32 2.4e-7), one FMA fewer than the Taylor series to the
  // same accuracy of tanh (2.1e-7 against 2.0e-7 over [-9, 9]).
  vf p = splat(1.327647129073739e-3f);
  p = fma_v(p, f, splat(9.675541892647743e-3f));
  p = fma_v(p, f, splat(5.550713092088699e-2f));
  p = fma_v(p, f, splat(2.4022120237350464e-1f));
  p = fma_v(p, f, splat(6.931469440460205e-1f));
  p = fma_v(p, f, splat(1.0000001192092896f));
  const vf d = times_pow2(p, n) + 1.0f;
  const vf r = recip_estimate(d);
  return fma_v(r, fma_v(-d, r, splat(1.0f)), r);
}

// An int32 sum back to float32: times the channel's scale, plus its bias.
inline vf scaled_sum(vi acc, const DotLayer& L, int c) {
  return fma_v(__builtin_convertvector(acc, vf), splat(L.scale[c]), splat(L.bias[c]));
}

// What a layer's arithmetic needs from its number format.
struct Int8 {
  static constexpr int kPack = 4;
  static constexpr int kRowStep = 1;
  static constexpr word kZero = 0x80808080u;  // four codes of 0
  using Acc = vi;
  using Vec = vi;
  static Vec load(const word* p) { return load_words(p); }
  static Vec broadcast(word w) { return splat_word(w); }
  static Acc dot(Acc acc, Vec a, Vec w) { return dot_u8s8(acc, a, w); }
  static Acc start(const DotLayer& L, int c) { return splat_word(word(L.acc_start[c])); }
  static vf value(Acc acc, const DotLayer& L, int c) { return scaled_sum(acc, L, c); }
  // tanh of kPack pre-activations (channels c..c + 3 of L) -> their codes,
  // channel k in byte k: round(m tanh) (to nearest even, the current rounding
  // mode; m = L.code_scale, 127 / the channel's range) clamped to [-127, 127],
  // + 128, with tanh rounded to float32 first as the reference does (folding
  // it all into round(255 - 254 r) made ten times more codes differ from the
  // reference). The signed packs saturate at 127 and leave each 128-bit lane
  // channel-major (4 pixels of channel 0, then 1, ...); one byte shuffle makes
  // it pixel-major, one byte max the lower clamp, and the top bit flipped is
  // the + 128.
  static vi pack_tanh(const vf* y, const DotLayer& L, int c) {
    vi q[kPack];
    for (int k = 0; k < kPack; ++k)
      q[k] = to_int_nearest(fma_v(splat(-2.0f), tanh_recip(y[k]), splat(1.0f)) * splat(L.code_scale[c + k]));
    const vi codes = shuffle_bytes(pack_bytes(q[0], q[1], q[2], q[3]), pixel_major(std::make_index_sequence<VW>()));
    return max_bytes(codes, splat_word(0x81818181u)) ^ int32_t(kZero);
  }
  // The byte shuffle: byte 4p + k of a lane <- byte 4k + p.
  template <size_t... I>
  static constexpr vi pixel_major(std::index_sequence<I...>) {
    return vi{int32_t(uint32_t(I % 4) | uint32_t(4 + I % 4) << 8 | uint32_t(8 + I % 4) << 16 |
                      uint32_t(12 + I % 4) << 24)...};
  }
};

#if defined(ESPCN_DOT_BF16)
struct Bf16 {
  static constexpr int kPack = 2;
  static constexpr int kRowStep = 1;
  static constexpr word kZero = 0;
  using Acc = vf;
  using Vec = vi;
  static Vec load(const word* p) { return load_words(p); }
  static Vec broadcast(word w) { return splat_word(w); }
  static Acc dot(Acc acc, Vec a, Vec w) { return (vf)_mm512_dpbf16_ps((__m512)acc, (__m512bh)a, (__m512bh)w); }
  static Acc start(const DotLayer& L, int c) { return splat(L.bias[c]); }
  static vf value(Acc acc, const DotLayer&, int) { return acc; }
  // tanh of two pre-activations -> bf16 (to nearest even), channel k in half k.
  static vi pack_tanh(const vf* y, const DotLayer&, int) {
    const __m256bh a0 = _mm512_cvtneps_pbh((__m512)fma_v(splat(-2.0f), tanh_recip(y[0]), splat(1.0f)));
    const __m256bh a1 = _mm512_cvtneps_pbh((__m512)fma_v(splat(-2.0f), tanh_recip(y[1]), splat(1.0f)));
    return (vi)_mm512_or_si512(_mm512_cvtepu16_epi32((__m256i)a0), _mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)a1), 16));
  }
};
#endif

// bf16's layer-1 input side: float32 rows of the image and float32 weights
// (as words of their bits), one FMA per tap. Its outputs are packed by the
// network's format, so its tanh layer writes words like the others.
struct Float32In {
  static constexpr int kPack = 1;
  static constexpr int kRowStep = 1;
  using Acc = vf;
  using Vec = vf;
  static Vec load(const word* p) { return ::espcn::cpu::ESPCN_ISA::load(reinterpret_cast<const float*>(p)); }
  static Vec broadcast(word w) { return (vf)splat_word(w); }
  static Acc dot(Acc acc, Vec a, Vec w) { return fma_v(a, w, acc); }
  static Acc start(const DotLayer& L, int c) { return splat(L.bias[c]); }
  static vf value(Acc acc, const DotLayer&, int) { return acc; }
};

// int8's layer-1 input side: each word holds the 16-bit codes round(32767 x)
// of two image rows (y in the low half, y + 1 in the high half) at one
// column, each weight word the 16-bit weights of two vertically adjacent
// taps, so one vpdpwssd does two taps: a k x k layer reads (k + 1) / 2 rows
// of words (the last one's high-half weight 0 when k is odd). int32 sums,
// exact (layer1_levels bounds them), scaled back to float32 and the bias added.
struct Int16In {
  static constexpr int kPack = 2;
  static constexpr int kRowStep = 2;
  using Acc = vi;
  using Vec = vi;
  static Vec load(const word* p) { return load_words(p); }
  static Vec broadcast(word w) { return splat_word(w); }
  static Acc dot(Acc acc, Vec a, Vec w) { return dot_s16s16(acc, a, w); }
  static Acc start(const DotLayer&, int) { return vi{}; }
  static vf value(Acc acc, const DotLayer& L, int c) { return scaled_sum(acc, L, c); }
};

// The input side of each network's layer 1.
template <class F>
struct Layer1In {
  using type = Float32In;
};
template <>
struct Layer1In<Int8> {
  using type = Int16In;
};

// Rows of input words a K x K layer reads: K, or (K + 1) / 2 for Int16In's row pairs.
template <class In>
constexpr int word_rows(int k) {
  return (k + In::kRowStep - 1) / In::kRowStep;
}

// One register tile: output channels [c0, c0 + NC) x pixels [x0, x0 + NX * VW)
// of one row. rows[ky] points at group 0, column x0 - K / 2 of input row
// y - K / 2 + ky; groups are `lp` words apart. With kTanh, the tile stores
// tanh of its values packed as words at group c0 / kPack of `out` (`out_lp`
// words per group; NC a multiple of kPack); else float32 values at channel c0
// of the planar float row `fout`. In: the inputs' format (its multiply-add);
// Out: the format that packs the outputs.
template <class In, class Out, int NC, int NX, int K, bool kTanh>
inline void dot_tile(const word* const* rows, size_t lp, const DotLayer& L, int c0, word* out, float* fout,
                     size_t out_lp) {
  typename In::Acc acc[NC][NX];
#pragma GCC unroll 16
  for (int c = 0; c < NC; ++c) {
    const typename In::Acc s = In::start(L, c0 + c);
#pragma GCC unroll 8
    for (int v = 0; v < NX; ++v) acc[c][v] = s;
  }
  const word* wp = L.weight + c0;
  constexpr int KY = word_rows<In>(K);
  for (int g = 0; g < L.in_groups; ++g) {
#pragma GCC unroll 8
    for (int ky = 0; ky < KY; ++ky) {
      const word* src = rows[ky] + g * lp;
#pragma GCC unroll 8
      for (int kx = 0; kx < K; ++kx, wp += L.out_stride) {
        typename In::Vec in[NX];
#pragma GCC unroll 8
        for (int v = 0; v < NX; ++v) in[v] = In::load(src + kx + v * VW);
#pragma GCC unroll 16
        for (int c = 0; c < NC; ++c) {
          const typename In::Vec s = In::broadcast(wp[c]);
#pragma GCC unroll 8
          for (int v = 0; v < NX; ++v) acc[c][v] = In::dot(acc[c][v], in[v], s);
        }
      }
    }
  }
  if constexpr (kTanh) {
    static_assert(NC % Out::kPack == 0, "a tanh tile stores whole groups");
#pragma GCC unroll 8
    for (int j = 0; j < NC / Out::kPack; ++j) {
#pragma GCC unroll 8
      for (int v = 0; v < NX; ++v) {
        vf a[Out::kPack];
        for (int k = 0; k < Out::kPack; ++k) {
          const int c = j * Out::kPack + k;
          a[k] = In::value(acc[c][v], L, c0 + c);
        }
        store_words(out + (c0 / Out::kPack + j) * out_lp + v * VW, Out::pack_tanh(a, L, c0 + j * Out::kPack));
      }
    }
  } else {
#pragma GCC unroll 16
    for (int c = 0; c < NC; ++c) {
#pragma GCC unroll 8
      for (int v = 0; v < NX; ++v) store(fout + (c0 + c) * out_lp + v * VW, In::value(acc[c][v], L, c0 + c));
    }
  }
}

// Pixel vectors of a tile for NC channels: at most 6, kDotAcc accumulators,
// and with the NX inputs and a broadcast weight within the vector registers
// (32 zmm; 16 ymm, as AVX2 has, also in the EVEX build).
constexpr int dot_nx(int nc) {
  const int regs = VW == 16 ? 32 : 16;
  int nx = kDotAcc / nc > 6 ? 6 : kDotAcc / nc;
  while (nx > 1 && nc * nx + nx + 1 > regs) --nx;
  return nx;
}

// Channels [c0, c0 + NC) of one output row over columns [0, xend).
template <class In, class Out, int NC, int K, bool kTanh>
void dot_row_channels(const word* const* rows, size_t lp, const DotLayer& L, int c0, word* out, float* fout,
                      size_t out_lp, int xend) {
  constexpr int NX = dot_nx(NC);
  constexpr int KY = word_rows<In>(K);
  const word* r[K];
  int x = 0;
  for (; x + NX * VW <= xend; x += NX * VW) {
    for (int ky = 0; ky < KY; ++ky) r[ky] = rows[ky] + x;
    dot_tile<In, Out, NC, NX, K, kTanh>(r, lp, L, c0, out + x, fout + x, out_lp);
  }
  for (; x < xend; x += VW) {
    for (int ky = 0; ky < KY; ++ky) r[ky] = rows[ky] + x;
    dot_tile<In, Out, NC, 1, K, kTanh>(r, lp, L, c0, out + x, fout + x, out_lp);
  }
}

// One output row of every channel: with kTanh packed words into `out`, else
// floats into `fout`. Channels go in near-equal chunks of at most 8, whole
// groups each when kTanh (a tanh layer's channels are padded to whole groups).
template <class In, class Out, int K, bool kTanh>
void dot_row_k(const word* const* rows, size_t lp, const DotLayer& L, word* out, float* fout, size_t out_lp,
               int xend) {
  constexpr int unit = kTanh ? Out::kPack : 1;
  const int units = ceil_div(L.out_channels, unit);
  const int chunks = ceil_div(units * unit, kMaxNC);
  for (int i = 0, c0 = 0; i < chunks; ++i) {
    const int c1 = int(int64_t(units) * (i + 1) / chunks) * unit;
    switch (c1 - c0) {
#define ESPCN_CASE(n)                                                                                     \
  case n:                                                                                                 \
    if constexpr (n % unit == 0)                                                                          \
      dot_row_channels<In, Out, n, K, kTanh>(rows, lp, L, c0, out, fout, out_lp, xend);                   \
    break;
      ESPCN_CASE(1) ESPCN_CASE(2) ESPCN_CASE(3) ESPCN_CASE(4)
      ESPCN_CASE(5) ESPCN_CASE(6) ESPCN_CASE(7) ESPCN_CASE(8)
#undef ESPCN_CASE
    }
    c0 = c1;
  }
}

template <class In, class Out, bool kTanh>
void dot_row(const word* const* rows, size_t lp, const DotLayer& L, word* out, float* fout, size_t out_lp,
             int xend) {
  switch (L.kernel) {
    case 1: dot_row_k<In, Out, 1, kTanh>(rows, lp, L, out, fout, out_lp, xend); break;
    case 3: dot_row_k<In, Out, 3, kTanh>(rows, lp, L, out, fout, out_lp, xend); break;
    case 5: dot_row_k<In, Out, 5, kTanh>(rows, lp, L, out, fout, out_lp, xend); break;
    case 7: dot_row_k<In, Out, 7, kTanh>(rows, lp, L, out, fout, out_lp, xend); break;
  }
}

// A ring of `n` rows of `groups` word rows (see Ring), padding words set to
// the format's zero.
struct WordRing {
  word* base;
  int n, groups, pad;
  size_t lp;
  int last = -(1 << 30);
  size_t slot_words() const { return lp * groups; }
  word* slot(int row) const { return base + ring_slot(row, n) * slot_words(); }
  word* at(int row) const { return slot(row) + pad; }
  size_t words() const { return size_t(n) * slot_words(); }
};

void fill(word* p, size_t n, word value) {
  for (size_t i = 0; i < n; ++i) p[i] = value;
}

// Set the columns right of the image back to the zero code (the tiles
// store whole vectors), for the next layer's padding.
template <class F>
void clear_right(const WordRing& ring, int row, int w) {
  word* out = ring.at(row);
  for (int g = 0; g < ring.groups; ++g) fill(out + g * ring.lp + w, ring.lp - ring.pad - w, F::kZero);
}

// A tanh layer: rows of the ring `dst` up to `upto`, each from the rows
// that ensure_src(y) makes ready below it; src_row(y) points at their
// group 0, column 0 (`src_lp` words a group), in the format In, one row
// every In::kRowStep. Layer 1 reads the image's float32 rows (bf16:
// Float32In) or its rows of 16-bit pairs (int8: Int16In), layer 2 the words
// of a1.
template <class In, class F, typename SrcRow, typename EnsureSrc>
void ensure_dot_layer(WordRing& dst, SrcRow src_row, size_t src_lp, const DotLayer& L, int h, int w, int upto,
                      EnsureSrc ensure_src) {
  const int pad = L.kernel / 2;
  const int xend = ceil_div(w, VW) * VW;
  const word* rows[kMaxKernel];
  while (dst.last < upto) {
    const int y = ++dst.last;
    if (y < 0 || y >= h) {
      fill(dst.slot(y), dst.slot_words(), F::kZero);
      continue;
    }
    ensure_src(y + pad);
    for (int j = 0; j < word_rows<In>(L.kernel); ++j) rows[j] = src_row(y - pad + j * In::kRowStep) - pad;
    dot_row<In, F, true>(rows, src_lp, L, dst.at(y), nullptr, dst.lp, xend);
    clear_right<F>(dst, y, w);
  }
}

// int8's layer-1 input: rows of words pairing image rows y and y + 1 (see
// Int16In), 0 outside the image; x lies in [-1, 1] (the bindings check).
inline vi pair_words(vf lo, vf hi) {
  return (to_int_nearest(lo * 32767.0f) & 0xffff) | (to_int_nearest(hi * 32767.0f) << 16);
}
inline word pair_word(float lo, float hi) {
  return word(uint16_t(int16_t(__builtin_nearbyintf(lo * 32767.0f)))) |
         word(uint16_t(int16_t(__builtin_nearbyintf(hi * 32767.0f)))) << 16;
}
void ensure_pairs(WordRing& ring, const float* x, int h, int w, int upto) {
  while (ring.last < upto) {
    const int y = ++ring.last;
    fill(ring.slot(y), ring.slot_words(), 0u);
    if (y < -1 || y >= h) continue;
    const float* r0 = y >= 0 ? x + size_t(y) * w : nullptr;
    const float* r1 = y + 1 < h ? x + size_t(y + 1) * w : nullptr;
    word* out = ring.at(y);
    int c = 0;
    for (; c + VW <= w; c += VW)
      store_words(out + c, pair_words(r0 ? load(r0 + c) : splat(0.0f), r1 ? load(r1 + c) : splat(0.0f)));
    for (; c < w; ++c) out[c] = pair_word(r0 ? r0[c] : 0.0f, r1 ? r1[c] : 0.0f);
  }
}

size_t dot_scratch(const DotLayer& l1, const DotLayer& l2, const DotLayer& l3, int w) {
  const size_t c1 = size_t(l1.kernel) * l1.in_groups * row_floats(w, l1.kernel / 2);
  const size_t a1 = size_t(l2.kernel) * l2.in_groups * row_floats(w, l2.kernel / 2);
  const size_t a2 = size_t(l3.kernel) * l3.in_groups * row_floats(w, l3.kernel / 2);
  return c1 + a1 + a2 + size_t(l3.out_channels) * row_floats(w, 0) + 64;
}

template <class F>
void dot_espcn(const DotLayer& l1, const DotLayer& l2, const DotLayer& l3, const ConvJob& job, float* scratch) {
  const int w = job.w, h = job.h;
  const int xend = ceil_div(w, VW) * VW;
  const int p1 = l1.kernel / 2, p2 = l2.kernel / 2, p3 = l3.kernel / 2;
  float* base = align64(scratch);
  // Layer 1's input: float32 image rows (Float32In), or int8's rows of 16-bit pairs (Int16In).
  using L1In = typename Layer1In<F>::type;
  constexpr bool kPairs = L1In::kRowStep == 2;
  Ring in{base, l1.kernel, l1.in_groups, p1, row_floats(w, p1)};
  WordRing pairs{reinterpret_cast<word*>(base), l1.kernel, 1, p1, row_floats(w, p1)};
  zero(in.base, in.floats());
  WordRing a1{reinterpret_cast<word*>(in.base + in.floats()), l2.kernel, l2.in_groups, p2, row_floats(w, p2)};
  WordRing a2{a1.base + a1.words(), l3.kernel, l3.in_groups, p3, row_floats(w, p3)};
  fill(a1.base, a1.words() + a2.words(), F::kZero);
  float* row = reinterpret_cast<float*>(a2.base + a2.words());
  const size_t row_lp = row_floats(w, 0);
  a2.last = job.y0 - p3 - 1;
  a1.last = a2.last - p2;
  in.last = pairs.last = a1.last - p1;
  auto in_row = [&](int r) {
    return kPairs ? static_cast<const word*>(pairs.at(r)) : reinterpret_cast<const word*>(in.at(r));
  };
  auto ensure_in = [&](int upto) {
    if constexpr (kPairs) ensure_pairs(pairs, job.x, h, w, upto);
    else ensure_input(in, job.x, h, w, upto);
  };
  auto ensure_a1 = [&](int upto) { ensure_dot_layer<L1In, F>(a1, in_row, in.lp, l1, h, w, upto, ensure_in); };
  auto a1_row = [&](int r) { return static_cast<const word*>(a1.at(r)); };
  const word* rows[kMaxKernel];
  for (int y = job.y0; y < job.y1; ++y) {
    ensure_dot_layer<F, F>(a2, a1_row, a1.lp, l2, h, w, y + p3, ensure_a1);
    for (int ky = 0; ky < l3.kernel; ++ky) rows[ky] = a2.at(y - p3 + ky) - p3;
    dot_row<F, F, false>(rows, a2.lp, l3, nullptr, row, row_lp, xend);
    store_pixel_shuffle(row, row_lp, l3.out_channels, y, h, w, job.scale, job.clamp, job.out);
  }
}

}  // namespace

const DotKernels* dot_kernels(Precision p) {
  static const DotKernels int8{ESPCN_DOT_INT8_NAME, Precision::kInt8, Int8::kPack, dot_scratch, dot_espcn<Int8>};
#if defined(ESPCN_DOT_BF16)
  static const DotKernels bf16{ESPCN_ISA_NAME "-bf16", Precision::kBf16, Bf16::kPack, dot_scratch, dot_espcn<Bf16>};
  if (p == Precision::kBf16) return &bf16;
#endif
  return p == Precision::kInt8 ? &int8 : nullptr;
}

}  // namespace espcn::cpu::ESPCN_ISA
