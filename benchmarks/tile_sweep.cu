// Tile shapes of the fused CUDA kernel, measured: for each precision, every
// candidate shape is checked against a float64 host reference and timed on
// 1080p outputs, next to what the extension launches today (espcn_fused).
// Exit status 1 when a shape's output is wrong.
// The answer goes into csrc/tile_geometry.h (kFused16Tiles, kFused32Tiles).
//
// No torch: it builds with nvcc alone, so it is built where nvcc is (here, or
// by `gpu_check.sh --stage-data`) and only runs on the GPU machine:
//
//   bash benchmarks/gpu_check_sweep_build.sh 9.0 gpu_data/tile_sweep
//   (nvcc: csrc/cuda/espcn_hopper.cu for sm_90a, the rest for sm_90, with
//   ESPCN_WITH_HOPPER: the Hopper kernel's rows, and "today's" as the extension
//   built for 9.0 launches it)
//   gpu_data/tile_sweep [--json FILE]     (--probe: exit 0 if it loads at all)
//   (FILE appears only when the sweep completes; until then its rows are in FILE.part)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../csrc/cuda/espcn_fused.cuh"
#if defined(ESPCN_WITH_HOPPER)
#include "../csrc/cuda/espcn_hopper.cuh"
#endif

namespace {

using namespace espcn;
using namespace espcn::cuda;

using Launch = cudaError_t (*)(const EspcnArgs&, cudaStream_t);

struct Candidate {
  Precision precision;
  int rows, cols;  // 0 x 0: the extension's own choice (espcn_fused)
  int bytes;
  Launch launch;
  const void* kernel;  // for its registers and blocks per SM (null for today's choice)
  int threads;         // per block
  int min_blocks;      // per SM, that the registers were capped for
  int groups;          // tiles a block works at once
  const char* label = nullptr;  // a kernel other than the 14x30 family's (its own tile name)
};

template <class P, int TH, int TW, int THREADS, int MIN_BLOCKS, int GROUPS>
Candidate shape(Precision p) {
  return {p, TH, TW, FusedLayout<P, TH, TW>::bytes(GROUPS), &launch_fused<P, TH, TW, THREADS, MIN_BLOCKS, GROUPS>,
          reinterpret_cast<const void*>(&espcn_fused_kernel<P, TH, TW, THREADS, MIN_BLOCKS, GROUPS>), THREADS,
          MIN_BLOCKS, GROUPS};
}

// Adds the shapes given as (rows, cols) pairs, in blocks of THREADS, MIN_BLOCKS per SM, GROUPS tiles at once.
template <class P, int THREADS, int MIN_BLOCKS, int GROUPS, int TH, int TW, int... Rest>
void add(std::vector<Candidate>& c, Precision p) {
  c.push_back(shape<P, TH, TW, THREADS, MIN_BLOCKS, GROUPS>(p));
  if constexpr (sizeof...(Rest) > 0) add<P, THREADS, MIN_BLOCKS, GROUPS, Rest...>(c, p);
}

// Shapes around today's choices: 16-bit storage from 115 KB to 213 KB;
// 32-bit storage (100 KB of weights) up to the 227 KB limit. (The H200 run
// of 2026-11-26 dropped the smallest: 6x14 and 6x22 16-bit, 4x14 and 2x30
// 32-bit, 30-90% slower.) With one block of 8 warps per SM the 16-bit
// kernel ran at a fifth of mma.sync's rate (docs/gpu-notes.md), so
// two ways to more warps: the best shapes in blocks of twice the threads
// (128 registers a thread), and 16-bit shapes of at most 113 KB with the
// registers capped for two blocks per SM (each block its own copy of the
// 49 KB of weights; more halo recomputed, but one block's barrier waits
// overlap the other's work; 8x14 and 10x14 spilled at 128 registers).
// The third way: blocks of 512 threads working two tiles at once, 8 warps
// each with its own named barrier, the weights shared ("/2g": at most 227 KB
// for both tiles' buffers and one copy of the weights).
template <class P>
void add16(std::vector<Candidate>& c, Precision p) {
  add<P, kFusedThreads, 1, 1, 14, 30, 14, 14, 6, 30, 10, 30, 14, 22, 22, 22, 16, 30, 6, 62, 8, 62>(c, p);
  add<P, 2 * kFusedThreads, 1, 1, 14, 30, 16, 30, 22, 22, 6, 62>(c, p);
  add<P, kFusedThreads, 2, 1, 8, 22, 6, 22>(c, p);
  add<P, 2 * kFusedThreads, 1, 2, 8, 30, 8, 22, 6, 30>(c, p);
}

template <class P>
void add32(std::vector<Candidate>& c, Precision p) {
  add<P, kFusedThreads, 1, 1, 6, 22, 6, 14, 8, 14, 4, 30, 6, 30, 8, 22>(c, p);
  add<P, 2 * kFusedThreads, 1, 1, 6, 30, 8, 22, 6, 22>(c, p);
}

const char* name(Precision p) {
  switch (p) {
    case Precision::kFp32: return "fp32";
    case Precision::kTf32: return "tf32";
    case Precision::kFp16: return "fp16";
    case Precision::kBf16: return "bf16";
  }
  return "?";
}

// Largest error allowed, relative to the reference's largest magnitude.
double tolerance(Precision p) {
  switch (p) {
    case Precision::kFp32: return 1e-4;
    case Precision::kTf32: return 5e-3;
    case Precision::kFp16: return 1e-2;
    case Precision::kBf16: return 5e-2;
  }
  return 0;
}

#define CHECK(call)                                                                        \
  do {                                                                                     \
    cudaError_t err_ = (call);                                                             \
    if (err_ != cudaSuccess) {                                                             \
      std::fprintf(stderr, "tile_sweep: %s: %s\n", #call, cudaGetErrorString(err_));       \
      std::exit(1);                                                                        \
    }                                                                                      \
  } while (0)

struct Layer {
  int cout, cin, k;
  std::vector<float> w, b;  // w as the kernel gets it, rounded to the precision's weight dtype
};

// Random weights of the trained network's magnitudes (He-like; the last layer smaller).
std::vector<Layer> make_layers(int scale, std::mt19937& rng) {
  std::vector<Layer> layers = {{kC1, 1, kK1}, {kC2, kC1, kK2}, {scale * scale, kC2, kK3}};
  for (size_t l = 0; l < layers.size(); ++l) {
    Layer& L = layers[l];
    const float sd = l == 2 ? 0.05f : std::sqrt(2.0f / float(L.cin * L.k * L.k));
    std::normal_distribution<float> normal(0.f, sd);
    std::uniform_real_distribution<float> bias(-0.1f, 0.1f);
    L.w.resize(size_t(L.cout) * L.cin * L.k * L.k);
    for (float& v : L.w) v = normal(rng);
    L.b.resize(L.cout);
    for (float& v : L.b) v = bias(rng);
  }
  layers[2].b.assign(layers[2].b.size(), 0.5f);  // outputs around mid-grey, as an image's
  return layers;
}

float round_to(Precision p, float v) {
  if (p == Precision::kFp16) return __half2float(__float2half_rn(v));
  if (p == Precision::kBf16) return __bfloat162float(__float2bfloat16_rn(v));
  return v;
}

// "Same" convolution in float64, then tanh or nothing.
std::vector<double> conv(const std::vector<double>& x, int n, int h, int w, const Layer& L, bool act) {
  std::vector<double> y(size_t(n) * L.cout * h * w);
  const int pad = L.k / 2;
  for (int i = 0; i < n; ++i)
    for (int co = 0; co < L.cout; ++co)
      for (int yy = 0; yy < h; ++yy)
        for (int xx = 0; xx < w; ++xx) {
          double s = L.b[co];
          for (int ci = 0; ci < L.cin; ++ci)
            for (int ky = 0; ky < L.k; ++ky) {
              const int sy = yy + ky - pad;
              if (sy < 0 || sy >= h) continue;
              for (int kx = 0; kx < L.k; ++kx) {
                const int sx = xx + kx - pad;
                if (sx < 0 || sx >= w) continue;
                s += double(L.w[((size_t(co) * L.cin + ci) * L.k + ky) * L.k + kx]) *
                     x[((size_t(i) * L.cin + ci) * h + sy) * w + sx];
              }
            }
          y[((size_t(i) * L.cout + co) * h + yy) * w + xx] = act ? std::tanh(s) : s;
        }
  return y;
}

std::vector<double> reference(const std::vector<float>& x, int n, int h, int w, int r, const std::vector<Layer>& L) {
  std::vector<double> a(x.begin(), x.end());
  a = conv(a, n, h, w, L[0], true);
  a = conv(a, n, h, w, L[1], true);
  a = conv(a, n, h, w, L[2], false);
  std::vector<double> out(size_t(n) * h * r * w * r);
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < r * r; ++c)
      for (int yy = 0; yy < h; ++yy)
        for (int xx = 0; xx < w; ++xx)
          out[(size_t(i) * h * r + yy * r + c / r) * (w * r) + xx * r + c % r] =
              a[((size_t(i) * r * r + c) * h + yy) * w + xx];
  return out;
}

// Device copies of one precision's weights (16-bit types for fp16/bf16).
struct DeviceWeights {
  void* w[3] = {};
  float* b[3] = {};
  DeviceWeights(Precision p, const std::vector<Layer>& layers) {
    for (int l = 0; l < 3; ++l) {
      const std::vector<float>& src = layers[l].w;
      if (p == Precision::kFp16 || p == Precision::kBf16) {
        std::vector<uint16_t> bits(src.size());
        for (size_t i = 0; i < src.size(); ++i) {
          if (p == Precision::kFp16) {
            const __half v = __float2half_rn(src[i]);
            std::memcpy(&bits[i], &v, 2);
          } else {
            const __nv_bfloat16 v = __float2bfloat16_rn(src[i]);
            std::memcpy(&bits[i], &v, 2);
          }
        }
        CHECK(cudaMalloc(&w[l], bits.size() * 2));
        CHECK(cudaMemcpy(w[l], bits.data(), bits.size() * 2, cudaMemcpyHostToDevice));
      } else {
        CHECK(cudaMalloc(&w[l], src.size() * 4));
        CHECK(cudaMemcpy(w[l], src.data(), src.size() * 4, cudaMemcpyHostToDevice));
      }
      CHECK(cudaMalloc(&b[l], layers[l].b.size() * 4));
      CHECK(cudaMemcpy(b[l], layers[l].b.data(), layers[l].b.size() * 4, cudaMemcpyHostToDevice));
    }
  }
  ~DeviceWeights() {
    for (int l = 0; l < 3; ++l) {
      cudaFree(w[l]);
      cudaFree(b[l]);
    }
  }
  EspcnArgs args(Precision p, const float* x, float* out, int n, int h, int wd, int r) const {
    EspcnArgs a{};
    a.x = x;
    a.w1 = w[0], a.b1 = b[0], a.w2 = w[1], a.b2 = b[1], a.w3 = w[2], a.b3 = b[2];
    a.out = out;
    a.half_io = false;
    a.n = n, a.h = h, a.w = wd, a.scale = r;
    a.clamp = false;
    a.precision = p;
    return a;
  }
};

// The layers with each weight rounded as the precision stores it (layer 1 of
// bf16 runs in fp16, as the kernel does).
std::vector<Layer> rounded(const std::vector<Layer>& layers, Precision p) {
  std::vector<Layer> out = layers;
  for (int l = 0; l < 3; ++l)
    for (float& v : out[l].w) v = round_to(p, v);
  return out;
}

// The check's input: two images whose sizes leave remainders for every tile
// shape and the Hopper kernel's 60-column strips (a width whose float32 rows
// are whole 16-byte units, as the Hopper kernel's tensor map needs).
constexpr int kCheckN = 2, kCheckH = 37, kCheckW = 116;

std::vector<float> check_input() {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> x(size_t(kCheckN) * kCheckH * kCheckW);
  for (float& v : x) v = u(rng);
  return x;
}

// Largest |error| / largest |reference| of one launch on the check's input.
double check(const Candidate& c, const std::vector<Layer>& layers, const std::vector<double>& ref, int r) {
  const int n = kCheckN, h = kCheckH, w = kCheckW;
  const std::vector<float> x = check_input();
  DeviceWeights dw(c.precision, layers);
  float *dx = nullptr, *dout = nullptr;
  CHECK(cudaMalloc(&dx, x.size() * 4));
  CHECK(cudaMalloc(&dout, ref.size() * 4));
  CHECK(cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
  CHECK(cudaMemset(dout, 0xff, ref.size() * 4));  // NaN: an output never written shows
  CHECK(c.launch(dw.args(c.precision, dx, dout, n, h, w, r), nullptr));
  CHECK(cudaDeviceSynchronize());
  std::vector<float> out(ref.size());
  CHECK(cudaMemcpy(out.data(), dout, out.size() * 4, cudaMemcpyDeviceToHost));
  cudaFree(dx);
  cudaFree(dout);
  double err = 0, mag = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    err = std::max(err, std::fabs(out[i] - ref[i]));
    mag = std::max(mag, std::fabs(ref[i]));
  }
  return err / mag;
}

// Median microseconds of one launch on a batch of 1080p-output frames:
// random images (never zeros), three of them in turn so that no cache holds
// the input for the next call.
double time_us(const Candidate& c, const std::vector<Layer>& layers, int r, int batch) {
  const int h = 1080 / r, w = 1920 / r;
  DeviceWeights dw(c.precision, layers);
  constexpr int kInputs = 3;
  float *dx[kInputs] = {}, *dout = nullptr;
  const size_t in = size_t(batch) * h * w, outn = in * r * r;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> host(in);
  for (float*& x : dx) {
    for (float& v : host) v = u(rng);
    CHECK(cudaMalloc(&x, in * 4));
    CHECK(cudaMemcpy(x, host.data(), in * 4, cudaMemcpyHostToDevice));
  }
  CHECK(cudaMalloc(&dout, outn * 4));
  EspcnArgs a[kInputs];
  for (int i = 0; i < kInputs; ++i) a[i] = dw.args(c.precision, dx[i], dout, batch, h, w, r);
  cudaEvent_t start, stop;
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 3; ++i) CHECK(c.launch(a[i % kInputs], nullptr));
  constexpr int kCalls = 21, kRepeats = 7;
  std::vector<double> us;
  for (int rep = 0; rep < kRepeats; ++rep) {
    CHECK(cudaEventRecord(start));
    for (int i = 0; i < kCalls; ++i) CHECK(c.launch(a[i % kInputs], nullptr));
    CHECK(cudaEventRecord(stop));
    CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, start, stop));
    us.push_back(1000.0 * ms / kCalls);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  for (float* x : dx) cudaFree(x);
  cudaFree(dout);
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const char* json_path = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
      json_path = argv[++i];
    } else if (std::strcmp(argv[i], "--probe") == 0) {
      return 0;  // the binary loads on this machine (gpu_check.sh asks before it trusts a carried one)
    } else {
      std::fprintf(stderr, "usage: tile_sweep [--json FILE] [--probe]\n");
      return 2;
    }
  }
  int device = 0;
  CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  CHECK(cudaGetDeviceProperties(&prop, device));
  const DeviceInfo info = device_info();
  std::printf("device: %s (sm_%d%d, %d SMs, %d KB shared memory per block)\n", prop.name, prop.major, prop.minor,
              info.sms, info.smem_optin / 1024);

  std::vector<Candidate> cands;
  for (Precision p : {Precision::kFp32, Precision::kTf32, Precision::kFp16, Precision::kBf16})
    cands.push_back({p, 0, 0, 0, &espcn_fused, nullptr, kFusedThreads, 1, 1});
  // The Hopper kernel next: a sweep cut short by its time limit keeps its rows.
#if defined(ESPCN_WITH_HOPPER)
  if (hopper_available()) {
    for (int step_rows : {1, 2}) {
      for (Precision p : {Precision::kFp16, Precision::kBf16}) {
        const HopperVariant v = hopper_variant(p, step_rows);
        cands.push_back({p, 0, 0, v.bytes, v.launch, v.kernel, v.threads, 1, 1,
                         step_rows == 1 ? "hopper 60-col strips, 1 row a step" : "hopper 60-col strips, 2 rows a step"});
      }
    }
  } else {
    std::printf("tile_sweep: the Hopper kernel does not run on this device (compute capability 9.0 only)\n");
  }
#endif
  add32<Fp32>(cands, Precision::kFp32);
  add32<Tf32>(cands, Precision::kTf32);
  add16<Fp16>(cands, Precision::kFp16);
  add16<Bf16>(cands, Precision::kBf16);

  std::mt19937 rng(1);
  std::vector<std::vector<Layer>> layers;
  for (int r = 2; r <= 4; ++r) layers.push_back(make_layers(r, rng));

  // Rows go to FILE.part as they are measured, renamed to FILE once the JSON
  // is closed: a sweep cut short (a failed CUDA call, a timeout) leaves no
  // invalid FILE, and its rows so far stay readable in FILE.part.
  const std::string part = json_path ? std::string(json_path) + ".part" : std::string();
  FILE* json = json_path ? std::fopen(part.c_str(), "w") : nullptr;
  if (json_path && !json) {
    std::fprintf(stderr, "tile_sweep: cannot write %s\n", part.c_str());
    return 2;
  }
  if (json) std::fprintf(json, "{\"device\": \"%s\", \"rows\": [\n", prop.name);
  std::printf("| precision | tile | KB | regs | blocks/SM | max rel. error | x2 us | x3 us | x4 us | x3 batch 8 us/frame |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  bool first = true, failed = false;
  std::vector<double> refs[4][3];  // float64 outputs by precision and scale, computed once
  for (const Candidate& c : cands) {
    // "14x30"; "14x30/512t" in blocks of other than kFusedThreads threads; "8x22/2b" capped for 2 blocks per SM.
    std::string tile = c.label ? c.label : c.rows ? std::to_string(c.rows) + "x" + std::to_string(c.cols) : "today's";
    if (c.threads != kFusedThreads) tile += "/" + std::to_string(c.threads) + "t";
    if (c.min_blocks > 1) tile += "/" + std::to_string(c.min_blocks) + "b";
    if (c.groups > 1) tile += "/" + std::to_string(c.groups) + "g";
    if (c.bytes > info.smem_optin) {
      std::printf("| %s | %s | %d | | | does not fit | | | | |\n", name(c.precision), tile.c_str(), c.bytes / 1024);
      continue;
    }
    double err = 0;
    for (int r = 2; r <= 4; ++r) {
      std::vector<double>& ref = refs[int(c.precision)][r - 2];
      if (ref.empty())
        ref = reference(check_input(), kCheckN, kCheckH, kCheckW, r, rounded(layers[r - 2], c.precision));
      err = std::max(err, check(c, layers[r - 2], ref, r));
    }
    const bool ok = err <= tolerance(c.precision);
    failed |= !ok;
    // Timed even when the check fails: if today's shape (tested on the CPU
    // emulator in CI) fails too, the host reference is what is wrong.
    double us[3];
    for (int r = 2; r <= 4; ++r) us[r - 2] = time_us(c, layers[r - 2], r, 1);
    const double batch8 = time_us(c, layers[1], 3, 8) / 8;
    int regs = 0, per_sm = 0;  // after the launches above, which raised the kernel's shared-memory limit
    if (c.kernel) {
      cudaFuncAttributes attr{};
      CHECK(cudaFuncGetAttributes(&attr, c.kernel));
      regs = attr.numRegs;
      CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, c.kernel, c.threads, c.bytes));
    }
    std::printf("| %s | %s | %d | %d | %d | %.1e%s | %.1f | %.1f | %.1f | %.1f |\n", name(c.precision), tile.c_str(),
                c.bytes / 1024, regs, per_sm, err, ok ? "" : " WRONG", us[0], us[1], us[2], batch8);
    std::fflush(stdout);
    if (json) {
      std::fprintf(json,
                   "%s  {\"precision\": \"%s\", \"tile\": \"%s\", \"bytes\": %d, \"max_rel_error\": %.3e, "
                   "\"threads\": %d, \"min_blocks\": %d, \"groups\": %d, \"regs\": %d, \"blocks_per_sm\": %d, \"ok\": %s, "
                   "\"us\": {\"x2\": %.2f, \"x3\": %.2f, \"x4\": %.2f, \"x3_batch8_per_frame\": %.2f}}",
                   first ? "" : ",\n", name(c.precision), tile.c_str(), c.bytes, std::isfinite(err) ? err : 1e30,
                   c.threads, c.min_blocks, c.groups, regs, per_sm, ok ? "true" : "false",
                   us[0], us[1], us[2], batch8);
      first = false;
      std::fflush(json);  // so that FILE.part holds every row measured when the sweep is killed
    }
  }
  if (json) {
    std::fprintf(json, "\n]}\n");
    if (std::fclose(json) != 0 || std::rename(part.c_str(), json_path) != 0) {
      std::fprintf(stderr, "tile_sweep: cannot write %s\n", json_path);
      return 2;
    }
  }
  return failed ? 1 : 0;
}
