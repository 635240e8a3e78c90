// Runs the fused CUDA kernel (csrc/cuda/espcn_fused_kernel.cuh, unchanged) on
// the CPU emulator. tests/test_cuda_emulation.py writes the inputs, runs this
// and compares the output with the float64 reference.
//
//   fused_emulation PRECISION SCALE N H W BLOCKS TILE X.f32 WEIGHTS.f32 OUT.f32 [half] [clamp]
//
// PRECISION fp32|tf32|fp16|bf16; BLOCKS the persistent grid (fewer blocks than
// tiles makes each block loop); TILE 0 or 1, which of the precision's tile
// shapes; WEIGHTS.f32 holds w1 b1 w2 b2 w3 b3 as float32, converted here to the
// precision's dtype as FastESPCN does. The output (float32) starts as NaN.
#define ESPCN_CUDA_EMULATION 1
#include "cuda_emulator.h"
// (the emulator first)
#include "../../csrc/cuda/espcn_fused_kernel.cuh"

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

template <class P, int TH, int TW>
static void run(EspcnArgs a, int blocks) {
  emu::launch(unsigned(blocks), kFusedThreads, FusedLayout<P, TH, TW>::kBytes,
              [a] { espcn_fused_kernel<P, TH, TW>(a); });
}

template <class P, const TileShape (&kShapes)[2]>
static void run_shape(const EspcnArgs& a, int blocks, int tile) {
  if (tile == 0) {
    run<P, kShapes[0].rows, kShapes[0].cols>(a, blocks);
  } else {
    run<P, kShapes[1].rows, kShapes[1].cols>(a, blocks);
  }
}

int main(int argc, char** argv) {
  if (argc < 11) {
    std::fprintf(stderr, "usage: %s PRECISION SCALE N H W BLOCKS TILE X WEIGHTS OUT [half] [clamp]\n", argv[0]);
    return 2;
  }
  const std::string precision = argv[1];
  const int r = std::atoi(argv[2]), n = std::atoi(argv[3]), h = std::atoi(argv[4]), w = std::atoi(argv[5]);
  const int blocks = std::atoi(argv[6]), tile = std::atoi(argv[7]);
  bool half_io = false, clamp = false;
  for (int i = 11; i < argc; ++i) {
    half_io = half_io || std::string(argv[i]) == "half";
    clamp = clamp || std::string(argv[i]) == "clamp";
  }
  const size_t pixels = size_t(n) * h * w, rr = size_t(r) * r;
  const size_t n1 = 64 * 25, n2 = 32 * 64 * 9, n3 = rr * 32 * 9;
  const std::vector<float> x = read_floats(argv[8], pixels);
  const std::vector<float> wts = read_floats(argv[9], n1 + 64 + n2 + 32 + n3 + rr);
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
    if (f16) {
      run_shape<Fp16, kFused16Tiles>(a, blocks, tile);
    } else {
      run_shape<Bf16, kFused16Tiles>(a, blocks, tile);
    }
  } else if (precision == "fp32" || precision == "tf32") {
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

  if (half_io)
    for (size_t i = 0; i < out.size(); ++i) out[i] = __half2float(out_half[i]);
  std::ofstream f(argv[10], std::ios::binary);
  f.write(reinterpret_cast<const char*>(out.data()), std::streamsize(out.size() * 4));
  return f ? 0 : 1;
}
