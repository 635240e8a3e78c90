// Exhaustive checks of csrc/tile_geometry.h on the CPU: the index maths the
// CUDA and CPU kernels share, against brute-force definitions. Prints each
// failure and exits non-zero on any (tests/test_tile_geometry.py runs it).
#include <cstdio>
#include <vector>

#include "../../csrc/tile_geometry.h"

using namespace espcn;

static int failures = 0;
#define EXPECT(cond, ...)                  \
  do {                                     \
    if (!(cond)) {                         \
      if (++failures <= 20) {              \
        std::printf("FAIL %s: ", #cond);   \
        std::printf(__VA_ARGS__);          \
        std::printf("\n");                 \
      }                                    \
    }                                      \
  } while (0)

// Every output pixel of an n x h x w batch lies in exactly one tile, and the
// region a tile's stage computes covers what the next stage reads.
static void check_tiles(TileShape s, int n, int h, int w) {
  const TileGrid grid(h, w, s);
  std::vector<int> hits(size_t(n) * h * w, 0);
  for (int t = 0; t < int(grid.count(n)); ++t) {
    int image, y0, x0;
    grid.locate(t, s, &image, &y0, &x0);
    EXPECT(image >= 0 && image < n && y0 >= 0 && y0 < h && x0 >= 0 && x0 < w, "tile %d at (%d, %d, %d)", t, image, y0, x0);
    for (int y = y0; y < y0 + s.rows && y < h; ++y)
      for (int x = x0; x < x0 + s.cols && x < w; ++x) ++hits[(size_t(image) * h + y) * w + x];
  }
  for (size_t i = 0; i < hits.size(); ++i) EXPECT(hits[i] == 1, "pixel %zu covered %d times (%dx%d tiles, %dx%d)", i, hits[i], s.rows, s.cols, h, w);
  // Halos: layer 3 (k 3) over the tile reads layer 2's region, layer 2 (k 3)
  // reads layer 1's, layer 1 (k 5) reads the input's.
  EXPECT(region_size(s.rows, kHalo3) == s.rows + kK3 - 1, "layer-2 region");
  EXPECT(region_size(s.rows, kHalo2) == region_size(s.rows, kHalo3) + kK2 - 1, "layer-1 region");
  EXPECT(region_size(s.rows, kHalo) == region_size(s.rows, kHalo2) + kK1 - 1, "input region");
}

// region_in_image against image coordinates computed directly.
static void check_regions(int h, int w) {
  for (int halo : {kHalo3, kHalo2, kHalo})
    for (int y0 = 0; y0 < h; y0 += 3)
      for (int x0 = 0; x0 < w; x0 += 5)
        for (int ry = 0; ry < 10; ++ry)
          for (int rx = 0; rx < 12; ++rx) {
            const int y = y0 + ry - halo, x = x0 + rx - halo;
            const bool inside = y >= 0 && x >= 0 && y < h && x < w;
            EXPECT(region_in_image(ry, rx, halo, y0, x0, h, w) == inside, "region (%d, %d) halo %d", ry, rx, halo);
          }
}

// pixel_shuffle_offset against torch.nn.functional.pixel_shuffle's definition:
// out[n][c][y*r + i][x*r + j] = in[n][c*r*r + i*r + j][y][x].
static void check_pixel_shuffle(int n, int c_out, int h, int w, int r) {
  std::vector<int> hits(size_t(n) * c_out * h * r * w * r, 0);
  for (int b = 0; b < n; ++b)
    for (int c = 0; c < c_out * r * r; ++c)
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
          const int co = c / (r * r), i = (c / r) % r, j = c % r;
          const int64_t expect = ((int64_t(b) * c_out + co) * h * r + y * r + i) * w * r + x * r + j;
          const int64_t got = pixel_shuffle_offset(b, c, y, x, r, c_out, h, w);
          EXPECT(got == expect, "r=%d c=%d y=%d x=%d: %lld != %lld", r, c, y, x, (long long)got, (long long)expect);
          if (got >= 0 && got < int64_t(hits.size())) ++hits[got];
        }
  for (size_t i = 0; i < hits.size(); ++i) EXPECT(hits[i] == 1, "HR element %zu written %d times", i, hits[i]);
}

static void check_strips() {
  for (int h = 1; h < 300; h += 7)
    for (int threads = 1; threads <= 5; ++threads) {
      const int strips = cpu_strip_count(h, threads);
      EXPECT(strips >= 1 && strips <= h, "h=%d threads=%d: %d strips", h, threads, strips);
      EXPECT(strip_begin(0, strips, h) == 0 && strip_begin(strips, strips, h) == h, "strips cover h=%d", h);
      for (int s = 0; s < strips; ++s) EXPECT(strip_begin(s, strips, h) < strip_begin(s + 1, strips, h), "empty strip");
    }
}

// The alternate tile choice against what the H200 measured (tile sweep,
// 2026-11-26, 132 blocks of one per SM): 16x30 beat 14x30 at x3 batch 1 only.
static void check_alternate() {
  const TileShape first = kFused16Tiles.first, alt = kFused16Tiles.alternate;
  EXPECT(fused_tile_macs(TileShape{14, 30}) == 612 * 32 * 64 + 512 * 9 * 64 * 32 + 420 * 9 * 32 * 16, "tile MACs");
  EXPECT(fused_launch_work(1, 360, 640, first, 132) == 5 * fused_tile_macs(first), "572 tiles: 5 rounds");
  EXPECT(prefer_alternate(1, 360, 640, first, 132, alt, 132), "x3 batch 1: 16x30 (117 vs 126 us)");
  EXPECT(!prefer_alternate(1, 540, 960, first, 132, alt, 132), "x2 batch 1: 14x30 (226 vs 234 us)");
  EXPECT(!prefer_alternate(1, 270, 480, first, 132, alt, 132), "x4 batch 1: 14x30 (85 vs 96 us)");
  EXPECT(!prefer_alternate(8, 360, 640, first, 132, alt, 132), "x3 batch 8: 14x30 (106 vs 107 us a frame)");
  EXPECT(!prefer_alternate(1, 5, 7, first, 132, alt, 132), "one tile either way: the first");
  EXPECT(!prefer_alternate(8, 270, 480, first, 132, alt, 132), "x4 batch 8 (unmeasured): 4%% less work is a near-tie");
  EXPECT(!prefer_alternate(1, 360, 640, first, 0, alt, 0), "no blocks (a failed query): the first");
}

// The Hopper kernel's strip rows: within its bounds, every strip grid covering
// the batch once (check_tiles), and on 132 SMs x 2 consumers the 1080p x3
// frame in one round of 264 strips of 15 rows.
static void check_hopper_strips() {
  EXPECT(hopper_strip_rows(1, 360, 640, 264) == 15, "x3 batch 1: %d", hopper_strip_rows(1, 360, 640, 264));
  for (int n : {1, 2, 8})
    for (int h : {1, 5, 47, 49, 360, 540})
      for (int w : {4, 60, 64, 640, 960})
        for (int64_t slots : {1, 2, 264}) {
          const int rows = hopper_strip_rows(n, h, w, slots);
          EXPECT(rows >= 4 && rows <= kHopperMaxStripRows, "rows %d for %d x %d x %d", rows, n, h, w);
          if (n == 1 && slots == 2 && (h == 5 || h == 49) && (w == 4 || w == 64))
            check_tiles(TileShape{rows, kHopperStripCols}, n, h, w);
        }
}

int main() {
  check_hopper_strips();
  for (const TileShape s : {kFused16Tiles.first, kFused16Tiles.alternate, kFused16Tiles.small})
    for (int h : {1, 5, s.rows, s.rows + 1, 3 * s.rows - 1, 40})
      for (int w : {1, 2, s.cols, s.cols + 3, 97}) check_tiles(s, 2, h, w);
  for (const TileShape s : {kFused32Tiles.first, kFused32Tiles.alternate, kFused32Tiles.small})
    for (int h : {1, 7, 13, 45})
      for (int w : {1, 23, 44, 101}) check_tiles(s, 3, h, w);
  check_alternate();
  check_regions(17, 23);
  check_regions(1, 1);
  for (int r = 1; r <= 4; ++r) check_pixel_shuffle(2, 2, 5, 7, r);
  check_strips();
  EXPECT(ring_slot(-1, 3) == 2 && ring_slot(4, 3) == 1, "ring_slot");
  for (int r = 1; r <= 6; ++r) {
    const int g = layer_channel_group(true, r);
    EXPECT(g >= 1 && g <= kLayerCo, "layer group %d at r=%d", g, r);
    EXPECT(r * r > kLayerCo || g % (r * r) == 0, "r=%d: group %d is not whole HR channels", r, g);
  }
  EXPECT(layer_channel_group(false, 3) == kLayerCo, "tanh layers take kLayerCo channels");
  if (failures) {
    std::printf("%d failure(s)\n", failures);
    return 1;
  }
  std::printf("tile geometry: all checks passed\n");
  return 0;
}
