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

ESPCN_HD int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Kernel sizes of the three layers (5x5, 3x3, 3x3) and the LR halo that an
// output tile needs around it: 1 for layer 3, +1 for layer 2, +2 for layer 1.
constexpr int kK1 = 5;
constexpr int kK2 = 3;
constexpr int kK3 = 3;
constexpr int kHalo3 = kK3 / 2;              // layer-2 rows/cols around an output tile
constexpr int kHalo2 = kHalo3 + kK2 / 2;     // layer-1 rows/cols around an output tile
constexpr int kHalo = kHalo2 + kK1 / 2;      // input rows/cols around an output tile (4)

// The network shape the fused CUDA kernel is compiled for: 1 -> 64 -> 32 -> r^2
// channels, r <= kFusedMaxScale. Other shapes run the per-layer kernels.
constexpr int kC1 = 64;
constexpr int kC2 = 32;
constexpr int kFusedMaxScale = 4;

// CUDA, fused kernel: each block of kFusedThreads threads loops over output
// tiles of rows x cols LR pixels, with all weights in shared memory for the
// whole launch and both intermediates in shared memory. Larger tiles
// recompute less halo (layer 2 computes (rows+2)(cols+2) pixels per
// rows*cols kept) but need more shared memory. Chosen by the tile sweep
// (benchmarks/tile_sweep.cu; its figures are in docs/gpu-notes.md).
struct TileShape {
  int rows, cols;
};
// Per precision family: the shape the launcher takes where it fits the GPU's
// shared memory (H100/H200 227 KB, A100 163 KB, RTX 30/40 and L4 99 KB), an
// alternate of about the same size taken instead when it fills the last
// round of blocks better (prefer_alternate; the same shape: none), and a
// small shape for GPUs that fit neither.
struct FusedTiles {
  TileShape first, alternate, small;
};
constexpr int kFusedThreads = 256;
// fp16/bf16 storage: 14x30 -> layer 2 over 16x32 = 32 m16 tiles (even across 8 warps), 177 KB;
// 16x30 (191 KB) is the alternate, for batches whose last round of blocks it fills better.
// (KB here and in the tile sweep: 1024 bytes.)
constexpr FusedTiles kFused16Tiles{{14, 30}, {16, 30}, {6, 14}};
// fp32/tf32 storage (twice the bytes, and 100 KB of fp32 weights): 6x30, no alternate.
constexpr FusedTiles kFused32Tiles{{6, 30}, {6, 30}, {4, 14}};

// Work of one warp in a fused stage: tensor-core stages take this many
// 16-pixel M tiles at a time (their B fragments are loaded once for all);
// FFMA stages take 32 * kFfmaPixels pixels (one per lane, 32 apart, so that
// a warp's 16-byte loads hit distinct banks) by kFfmaChannels channels.
constexpr int kFused16MTiles = 2;
constexpr int kFused32MTiles = 1;
constexpr int kFfmaPixels = 2;
constexpr int kFfmaChannels = 8;

// CUDA, per-layer kernel: a block computes a kLayerTile^2 pixel tile for
// kLayerCo output channels, kLayerChunk input channels at a time.
constexpr int kLayerTile = 16;
constexpr int kLayerCo = 16;
constexpr int kLayerChunk = 4;
constexpr int kLayerMaxKernel = 7;

// Output channels per block of the per-layer kernel. For the pixel shuffle, a
// whole number of HR channels (r^2 LR channels each) when r^2 <= kLayerCo, so
// that the block can stage its HR tile and write it along HR rows.
ESPCN_HD int layer_channel_group(bool pixel_shuffle, int scale) {
  const int rr = scale * scale;
  return pixel_shuffle && rr <= kLayerCo ? (kLayerCo / rr) * rr : kLayerCo;
}

// Rows, cols of the region each fused stage computes around a rows x cols
// output tile, and where it starts relative to the tile: the input (halo 4),
// layer 1 (halo 2), layer 2 (halo 1).
ESPCN_HD int region_size(int tile, int halo) { return tile + 2 * halo; }

// Whether region pixel (ry, rx) of a region starting `halo` rows/cols before
// tile origin (y0, x0) lies in the h x w image: outside it the layer's output
// must be the next layer's zero padding, not tanh(bias).
ESPCN_HD bool region_in_image(int ry, int rx, int halo, int y0, int x0, int h, int w) {
  const int y = y0 - halo + ry, x = x0 - halo + rx;
  return y >= 0 && y < h && x >= 0 && x < w;
}

// Output tiles of an n x h x w batch, and tile t's image and origin.
struct TileGrid {
  int tiles_y, tiles_x;
  ESPCN_HD TileGrid(int h, int w, TileShape s) : tiles_y(ceil_div(h, s.rows)), tiles_x(ceil_div(w, s.cols)) {}
  ESPCN_HD int64_t count(int n) const { return int64_t(n) * tiles_y * tiles_x; }
  ESPCN_HD void locate(int t, TileShape s, int* image, int* y0, int* x0) const {
    const int per_image = tiles_y * tiles_x, r = t % per_image;
    *image = t / per_image;
    *y0 = (r / tiles_x) * s.rows;
    *x0 = (r % tiles_x) * s.cols;
  }
};

// Multiply-adds of one fused tile: layers 1, 2 and 3 over the tile and their
// halos, with K and N padded as the tensor-core stages pad them (layer 1's 25
// taps to 32, layer 3's r^2 <= 16 channels to 16).
ESPCN_HD int64_t fused_tile_macs(TileShape s) {
  const int64_t l1 = int64_t(region_size(s.rows, kHalo2)) * region_size(s.cols, kHalo2) * 32 * kC1;
  const int64_t l2 = int64_t(region_size(s.rows, kHalo3)) * region_size(s.cols, kHalo3) * kK2 * kK2 * kC1 * kC2;
  const int64_t l3 = int64_t(s.rows) * s.cols * kK3 * kK3 * kC2 * 16;
  return l1 + l2 + l3;
}

// The work of the busiest block of a persistent launch over an n x h x w
// batch with at most `blocks` blocks resident: ceil(tiles / blocks) tiles.
ESPCN_HD int64_t fused_launch_work(int n, int h, int w, TileShape s, int64_t blocks) {
  const int64_t tiles = TileGrid(h, w, s).count(n);
  return (tiles + blocks - 1) / blocks * fused_tile_macs(s);
}

// Whether the alternate tile shape should run instead of the first: by over
// 5% less work for its busiest block (the margin keeps near-ties on the default,
// which measured faster there; docs/gpu-notes.md).
ESPCN_HD bool prefer_alternate(int n, int h, int w, TileShape first, int64_t first_blocks, TileShape alt,
                               int64_t alt_blocks) {
  if (first_blocks < 1 || alt_blocks < 1) return false;
  return 100 * fused_launch_work(n, h, w, alt, alt_blocks) < 95 * fused_launch_work(n, h, w, first, first_blocks);
}

// CUDA, Hopper kernel (sm_90a): each consumer warpgroup streams strips of
// kHopperStripCols LR columns and at most kHopperMaxStripRows rows down a row
// at a time; a row of layer 1 (the strip plus 2 columns each side) is one
// 64-pixel wgmma M. The rows of a strip are chosen per launch
// (hopper_strip_rows); the strips are a TileGrid of TileShape{rows, 60}.
constexpr int kHopperStripCols = 60;
constexpr int kHopperMaxStripRows = 48;
constexpr int kHopperConsumers = 2;  // consumer warpgroups a block
// Rows each layer computes per step (one 64-pixel wgmma M each, one wait for
// all): 1, or 2 (half the barriers and waits a row, 212 KB of shared memory
// instead of 179), which the tile sweep times too.
constexpr int kHopperStepRows = 1;

// Strip rows for an n x h x w batch on `slots` consumers (blocks x
// kHopperConsumers): the fewest rounds of strips times the rows a strip's
// layer 2 computes (rows + 2, its halo), the dominant cost; ties to the
// taller strip (less halo).
ESPCN_HD int hopper_strip_rows(int n, int h, int w, int64_t slots) {
  if (slots < 1) slots = 1;
  const int64_t columns = int64_t(n) * ceil_div(w, kHopperStripCols);
  int best = kHopperMaxStripRows;
  int64_t best_cost = -1;
  for (int rows = kHopperMaxStripRows; rows >= 4; --rows) {
    const int64_t strips = columns * ceil_div(h, rows);
    const int64_t used = rows < h ? rows : h;
    const int64_t cost = (strips + slots - 1) / slots * (used + 2);
    if (best_cost < 0 || cost < best_cost) {
      best = rows;
      best_cost = cost;
    }
  }
  return best;
}

// CPU: each task is a strip of this many LR rows of one image; the network
// runs down the strip a row at a time with the intermediates in small ring
// buffers, so only the 2 + 4 rows of halo at each strip start are recomputed.
constexpr int kCpuStripRows = 64;

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
