// Tile geometry and index maths shared by the CPU and CUDA kernels: the one
// place that knows the network's halos, the pixel-shuffle addressing and the
// tile sizes. No torch headers: this compiles in .cu files and plain C++.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define ESPCN_HD __host__ __device__ __forceinline__
#else
#define ESPCN_HD inline
#endif

namespace espcn {

// Kernel sizes of the three layers (5x5, 3x3, 3x3) and the LR halo that an
// output tile needs around it: 1 for layer 3, +1 for layer 2, +2 for layer 1.
constexpr int kK1 = 5;
constexpr int kK2 = 3;
constexpr int kK3 = 3;
constexpr int kHalo3 = kK3 / 2;              // layer-2 rows/cols around an output tile
constexpr int kHalo2 = kHalo3 + kK2 / 2;     // layer-1 rows/cols around an output tile
constexpr int kHalo = kHalo2 + kK1 / 2;      // input rows/cols around an output tile (4)

// CPU: each task is a strip of this many LR rows of one image; the network
// runs down the strip a row at a time with the intermediates in small ring
// buffers, so only the 2 + 4 rows of halo at each strip start are recomputed.
constexpr int kCpuStripRows = 64;

ESPCN_HD int ceil_div(int a, int b) { return (a + b - 1) / b; }

// "Same" zero padding of an odd kernel.
ESPCN_HD int same_padding(int kernel) { return kernel / 2; }

// Index of a row in a ring buffer of `n` rows; `row` may be negative.
ESPCN_HD int ring_slot(int row, int n) { return ((row % n) + n) % n; }

// Pixel shuffle: LR conv output channel c = co * r^2 + i * r + j at LR pixel
// (y, x) lands in HR channel co at (y * r + i, x * r + j). Offset in an
// (N, C, H*r, W*r) contiguous tensor:
ESPCN_HD int64_t pixel_shuffle_offset(int n, int c, int y, int x, int scale, int out_channels,
                                      int h, int w) {
  const int rr = scale * scale;
  const int co = c / rr, i = (c % rr) / scale, j = c % scale;
  const int64_t hr_w = int64_t(w) * scale, hr_h = int64_t(h) * scale;
  return ((int64_t(n) * out_channels + co) * hr_h + (int64_t(y) * scale + i)) * hr_w +
         int64_t(x) * scale + j;
}

// Number of CPU strips covering `h` rows: at most kCpuStripRows each, and a
// multiple of `threads` so that one image splits evenly across the threads
// (9 strips on 2 threads would leave one thread idle for a ninth of the time).
ESPCN_HD int cpu_strip_count(int h, int threads) {
  if (threads < 1) threads = 1;
  int strips = ceil_div(ceil_div(h, kCpuStripRows), threads) * threads;
  return strips > h ? (h < 1 ? 1 : h) : strips;
}

// Rows [begin, end) of strip s of `strips` over `h` rows (balanced).
ESPCN_HD int strip_begin(int s, int strips, int h) {
  return int(int64_t(h) * s / strips);
}

}  // namespace espcn
