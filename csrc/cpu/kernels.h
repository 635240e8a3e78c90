// The CPU kernels' plain C++ interface: pointers and sizes, no torch.
// One implementation (conv_rows.h) is compiled once per instruction set
// (AVX-512, AVX2, portable); cpu_kernels() picks the best one the CPU runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "../precision.h"

namespace espcn::cpu {

// A convolution with its weights repacked as [ci][ky][kx][co].
struct PackedConv {
  const float* weight;
  const float* bias;
  int in_channels;
  int out_channels;
  int kernel;  // 1, 3, 5 or 7
  // 3x3 layers may also carry Winograd F(2x2, 3x3) weights U = G g G^T as
  // [16][ci][co], and a zero bias of out_channels; nullptr otherwise.
  const float* winograd;
  const float* zero_bias;
};

enum class Epilogue { kTanh, kPixelShuffle };

// Output layouts: kTanh writes (C, H, W) planes; kPixelShuffle writes the
// (C / r^2, H*r, W*r) planes of one image. Rows [y0, y1) of one image.
struct ConvJob {
  const float* x;  // (in_channels, h, w) of one image
  float* out;
  int h, w;
  int y0, y1;
  Epilogue epilogue;
  int scale;   // kPixelShuffle only
  bool clamp;  // clamp to [0, 1], kPixelShuffle only
};

struct Kernels {
  const char* name;
  int vector_width;  // floats per SIMD vector
  int max_kernel;    // largest kernel size the CPU kernels take
  // Scratch floats a call needs for an image width (per thread).
  size_t (*conv_scratch)(const PackedConv& layer, int w);
  void (*conv)(const PackedConv& layer, const ConvJob& job, float* scratch);
  size_t (*espcn_scratch)(const PackedConv& l1, const PackedConv& l2, const PackedConv& l3, int w);
  // The whole network on rows [y0, y1): layers 1 and 2 with tanh, layer 3 with
  // the pixel shuffle (job.epilogue is ignored).
  void (*espcn)(const PackedConv& l1, const PackedConv& l2, const PackedConv& l3, const ConvJob& job,
                float* scratch);
  // Elementwise tanh (for tests of the vector tanh).
  void (*tanh)(const float* x, float* y, size_t n);
};

// A layer of the bf16/int8 kernels (dot_rows.h): weights as 32-bit words of
// `pack` input channels (2 bf16 or 4 int8; layer 1: one float32 in bf16,
// two vertically adjacent 16-bit taps in int8, [(k + 1) / 2][kx][out]),
// [in_group][ky][kx][out_stride].
// Per output channel: bias; int8 also the scale back to float (weight scale
// / 127) and the accumulator's start, -128 * the sum of its int8 weights.
// A tanh layer's outputs are padded to whole groups (zero weights and bias);
// in int8 each output a is stored as round(a * code_scale) (127 / its range).
struct DotLayer {
  const uint32_t* weight;
  const float* scale;       // int8 only
  const float* bias;
  const int32_t* acc_start;  // int8 only
  int in_groups;
  int out_channels;
  int out_stride;
  int kernel;
  const float* code_scale = nullptr;  // int8 tanh layers only
};

struct DotKernels {
  const char* name;
  Precision precision;
  int pack;  // input channels per weight word
  // Scratch floats per thread; then layer 1 (bf16: pack_dot_float; int8:
  // pack_dot_int16) and
  // layers 2, 3 on rows [y0, y1) of one image, written through the pixel shuffle.
  size_t (*espcn_scratch)(const DotLayer& l1, const DotLayer& l2, const DotLayer& l3, int w);
  void (*espcn)(const DotLayer& l1, const DotLayer& l2, const DotLayer& l3, const ConvJob& job, float* scratch);
};

// The kernels for this CPU: AVX-512 where present, else AVX2+FMA, else
// portable. ESPCN_FAST_CPU_ISA=avx512|avx2|portable forces one (an
// unsupported choice falls back, never an illegal instruction).
const Kernels& cpu_kernels();
// All the implementations this CPU can run, best first.
int available_kernels(const Kernels** out, int max);
// The kernels of a reduced precision (kBf16, kInt8), or nullptr with the
// reason in `why_not` (the instruction set this CPU lacks, or the one
// ESPCN_FAST_CPU_ISA forces).
const DotKernels* dot_kernels(Precision p, std::string& why_not);

}  // namespace espcn::cpu
