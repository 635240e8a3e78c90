// Runs the CUDA kernels (csrc/cuda/*_kernel.cuh, unchanged) on the CPU
// emulator. tests/test_cuda_emulation.py writes the inputs, runs this and
// compares the output with the float64 reference.
//
//   emulate_kernels fused PRECISION SCALE N H W BLOCKS TILE X.f32 WEIGHTS.f32 OUT.f32 [half] [clamp]
//   emulate_kernels hopper PRECISION SCALE N H W BLOCKS ROWS X.f32 WEIGHTS.f32 OUT.f32 [half] [clamp]
//   emulate_kernels layer N CIN COUT H W K SCALE X.f32 WEIGHT.f32 BIAS.f32 OUT.f32 [half] [clamp] [shuffle]
//
// fused:
// PRECISION fp32|tf32|fp16|bf16; BLOCKS the persistent grid (fewer blocks than
// tiles makes each block loop); TILE 0, 1 or 3: the precision's first, small
// or alternate tile shape, 2 the first in blocks of twice the threads, 4 the
// small one in blocks of twice the threads working two tiles at once;
// WEIGHTS.f32 holds w1 b1 w2 b2 w3 b3 as float32, converted here to the
// precision's dtype as FastESPCN does. layer: conv2d_tanh, or with `shuffle`
// conv2d_pixel_shuffle at SCALE. Outputs (written as float32) start as NaN.
// hopper: the sm_90a kernel (fp16 or bf16) on a grid of BLOCKS, strips of
// ROWS rows (0: the launcher's choice for BLOCKS blocks; ROWS + 100: the
// variant computing 2 rows a step); exit status 3 when
// the launcher would not take the call (hopper_takes) or the image's tensor
// map cannot be encoded.
#define ESPCN_CUDA_EMULATION 1
#include "cuda_emulator.h"
#include "hopper_emulator.h"
// (the emulator first)
#include "../../csrc/cuda/conv_layer_kernel.cuh"
#include "../../csrc/cuda/espcn_fused_kernel.cuh"
#include "../../csrc/cuda/espcn_hopper.cuh"
#include "../../csrc/cuda/espcn_hopper_kernel.cuh"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>

using namespace espcn;
using namespace espcn::cuda;

static std::vector<float> read_floats(const char* path, size_t count) {
  std::vector<float> v(count);
  std::ifstream f(path, std::ios::binary);
  f.read(reinterpret_cast<char*>(v.data()), std::streamsize(count * 4));
  if (!f) {
    std::fprintf(stderr, "cannot read %zu floats from %s\n", count, path);
    std::exit(2);
  }
  return v;
}

template <class T>
static std::vector<T> convert(const float* src, size_t count) {
  std::vector<T> out(count);
  for (size_t i = 0; i < count; ++i) {
    if constexpr (std::is_same_v<T, __half>) {
      out[i] = __float2half_rn(src[i]);
    } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      out[i] = __float2bfloat16_rn(src[i]);
    } else {
      out[i] = src[i];
    }
  }
  return out;
}

template <class P, int TH, int TW, int THREADS = kFusedThreads, int GROUPS = 1>
static void run(EspcnArgs a, int blocks) {
  emu::launch(dim3(unsigned(blocks), 1, 1), THREADS, FusedLayout<P, TH, TW>::bytes(GROUPS),
              [a] { espcn_fused_kernel<P, TH, TW, THREADS, 1, GROUPS>(a); });
}

// TILE 0: the first shape, 1: the small one, 2: the first in blocks of twice
// the threads (what the tile sweep times on a GPU), 3: the alternate, 4: the
// small one in blocks of twice the threads working two tiles at once.
template <class P, const FusedTiles& kT>
static void run_shape(const EspcnArgs& a, int blocks, int tile) {
  if (tile == 0) {
    run<P, kT.first.rows, kT.first.cols>(a, blocks);
  } else if (tile == 1) {
    run<P, kT.small.rows, kT.small.cols>(a, blocks);
  } else if (tile == 2) {
    run<P, kT.first.rows, kT.first.cols, 2 * kFusedThreads>(a, blocks);
  } else if (tile == 3) {
    run<P, kT.alternate.rows, kT.alternate.cols>(a, blocks);
  } else {
    run<P, kT.small.rows, kT.small.cols, 2 * kFusedThreads, 2>(a, blocks);
  }
}

static bool has_flag(int argc, char** argv, int from, const char* flag) {
  for (int i = from; i < argc; ++i)
    if (std::string(argv[i]) == flag) return true;
  return false;
}

static int write_floats(const char* path, const std::vector<float>& v) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * 4));
  return f ? 0 : 1;
}

// Values of a float16 output (half_io) as float32.
static std::vector<float> widen(const std::vector<__half>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = __half2float(v[i]);
  return out;
}

static int layer(int argc, char** argv) {
  if (argc < 11) {
    std::fprintf(stderr, "usage: layer N CIN COUT H W K SCALE X WEIGHT BIAS OUT [half] [clamp] [shuffle]\n");
    return 2;
  }
  ConvLayerArgs a{};
  a.n = std::atoi(argv[0]);
  a.in_channels = std::atoi(argv[1]);
  a.out_channels = std::atoi(argv[2]);
  a.h = std::atoi(argv[3]);
  a.w = std::atoi(argv[4]);
  a.kernel = std::atoi(argv[5]);
  a.scale = std::atoi(argv[6]);
  a.half_io = has_flag(argc, argv, 11, "half");
  a.clamp = has_flag(argc, argv, 11, "clamp");
  a.pixel_shuffle = has_flag(argc, argv, 11, "shuffle");
  const size_t in = size_t(a.n) * a.in_channels * a.h * a.w, out_count = size_t(a.n) * a.out_channels * a.h * a.w;
  const std::vector<float> x = read_floats(argv[7], in);
  const std::vector<float> w = read_floats(argv[8], size_t(a.out_channels) * a.in_channels * a.kernel * a.kernel);
  const std::vector<float> b = read_floats(argv[9], size_t(a.out_channels));
  const std::vector<__half> x_half = convert<__half>(x.data(), in);
  std::vector<float> out(out_count, std::numeric_limits<float>::quiet_NaN());
  std::vector<__half> out_half(out_count, __float2half_rn(std::numeric_limits<float>::quiet_NaN()));
  a.x = a.half_io ? static_cast<const void*>(x_half.data()) : x.data();
  a.weight = w.data();
  a.bias = b.data();
  a.out = a.half_io ? static_cast<void*>(out_half.data()) : out.data();
  const int tiles_x = ceil_div(a.w, kLayerTile);
  const int groups = ceil_div(a.out_channels, layer_channel_group(a.pixel_shuffle, a.scale));
  emu::launch(dim3(unsigned(a.n * groups * tiles_x), unsigned(ceil_div(a.h, kLayerTile)), 1), kLayerThreads,
              kLayerSharedBytes, [&a, tiles_x, groups] { conv_layer_kernel(a, tiles_x, groups); });
  return write_floats(argv[10], a.half_io ? widen(out_half) : out);
}

// The Hopper launch as espcn_hopper.cu makes it, with the emulator's tensor map.
template <class P, int STEP_ROWS>
static int run_hopper(const EspcnArgs& a, int blocks, int rows) {
  if (!hopper_takes(a)) return 3;
  if (rows == 0) rows = hopper_strip_rows(a.n, a.h, a.w, int64_t(blocks) * kHopperConsumers);
  const ImageMapShape s = image_map_shape(a, rows);
  emu::TensorMap map;
  if (!emu::encode_tiled(&map, a.x, s.element_bytes, s.dims, s.pitches, s.box)) return 3;
  emu::launch(dim3(unsigned(blocks), 1, 1), HopperLayout<STEP_ROWS>::kThreads, HopperLayout<STEP_ROWS>::kBytes,
              [map, a, rows] { espcn_hopper_kernel<P, STEP_ROWS>(map, a, rows); });
  return 0;
}

static int fused(int argc, char** argv, bool hopper = false) {
  if (argc < 10) {
    std::fprintf(stderr, "usage: fused PRECISION SCALE N H W BLOCKS TILE X WEIGHTS OUT [half] [clamp]\n");
    return 2;
  }
  const std::string precision = argv[0];
  const int r = std::atoi(argv[1]), n = std::atoi(argv[2]), h = std::atoi(argv[3]), w = std::atoi(argv[4]);
  const int blocks = std::atoi(argv[5]), tile = std::atoi(argv[6]);
  if (!hopper && (tile < 0 || tile > 4)) {
    std::fprintf(stderr, "TILE must be 0 (first), 1 (small), 2 (first, 512 threads), 3 (alternate) or 4 (small, "
                 "two tiles at once), got %d\n", tile);
    return 2;
  }
  const bool half_io = has_flag(argc, argv, 10, "half"), clamp = has_flag(argc, argv, 10, "clamp");
  const size_t pixels = size_t(n) * h * w, rr = size_t(r) * r;
  const size_t n1 = 64 * 25, n2 = 32 * 64 * 9, n3 = rr * 32 * 9;
  const std::vector<float> x = read_floats(argv[7], pixels);
  const std::vector<float> wts = read_floats(argv[8], n1 + 64 + n2 + 32 + n3 + rr);
  const float* w1 = wts.data();
  const float* b1 = w1 + n1;
  const float* w2 = b1 + 64;
  const float* b2 = w2 + n2;
  const float* w3 = b2 + 32;
  const float* b3 = w3 + n3;

  const std::vector<__half> x_half = convert<__half>(x.data(), pixels);
  std::vector<float> out(pixels * rr, std::numeric_limits<float>::quiet_NaN());
  std::vector<__half> out_half(pixels * rr, __float2half_rn(std::numeric_limits<float>::quiet_NaN()));
  EspcnArgs a{};
  a.x = half_io ? static_cast<const void*>(x_half.data()) : x.data();
  a.b1 = b1;
  a.b2 = b2;
  a.b3 = b3;
  a.out = half_io ? static_cast<void*>(out_half.data()) : out.data();
  a.half_io = half_io;
  a.n = n;
  a.h = h;
  a.w = w;
  a.scale = r;
  a.clamp = clamp;

  if (precision == "fp16" || precision == "bf16") {
    const bool f16 = precision == "fp16";
    const auto h1 = convert<__half>(w1, n1), h2 = convert<__half>(w2, n2), h3 = convert<__half>(w3, n3);
    const auto g1 = convert<__nv_bfloat16>(w1, n1), g2 = convert<__nv_bfloat16>(w2, n2), g3 = convert<__nv_bfloat16>(w3, n3);
    a.w1 = f16 ? static_cast<const void*>(h1.data()) : g1.data();
    a.w2 = f16 ? static_cast<const void*>(h2.data()) : g2.data();
    a.w3 = f16 ? static_cast<const void*>(h3.data()) : g3.data();
    if (hopper) {
      a.precision = f16 ? Precision::kFp16 : Precision::kBf16;
      // TILE: strip rows (0: the launcher's choice), plus 100 for 2 rows a step.
      const int rows = tile % 100;
      const int status = tile >= 100 ? (f16 ? run_hopper<Fp16, 2>(a, blocks, rows) : run_hopper<Bf16, 2>(a, blocks, rows))
                                     : (f16 ? run_hopper<Fp16, 1>(a, blocks, rows) : run_hopper<Bf16, 1>(a, blocks, rows));
      if (status != 0) return status;
    } else if (f16) {
      run_shape<Fp16, kFused16Tiles>(a, blocks, tile);
    } else {
      run_shape<Bf16, kFused16Tiles>(a, blocks, tile);
    }
  } else if (!hopper && (precision == "fp32" || precision == "tf32")) {
    a.w1 = w1;
    a.w2 = w2;
    a.w3 = w3;
    if (precision == "fp32") {
      run_shape<Fp32, kFused32Tiles>(a, blocks, tile);
    } else {
      run_shape<Tf32, kFused32Tiles>(a, blocks, tile);
    }
  } else {
    std::fprintf(stderr, "unknown precision %s\n", precision.c_str());
    return 2;
  }

  return write_floats(argv[9], half_io ? widen(out_half) : out);
}

int main(int argc, char** argv) {
  const std::string what = argc > 1 ? argv[1] : "";
  if (what == "fused") return fused(argc - 2, argv + 2);
  if (what == "layer") return layer(argc - 2, argv + 2);
  if (what == "hopper") return fused(argc - 2, argv + 2, true);
  std::fprintf(stderr, "usage: %s fused|hopper|layer ...\n", argv[0]);
  return 2;
}
