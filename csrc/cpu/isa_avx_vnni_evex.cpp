// The 256-bit int8 CPU kernels of isa_avx_vnni.cpp with vpdpbusd in its EVEX
// form (AVX512-VNNI with AVX512-VL): what ESPCN_FAST_CPU_ISA=avx2 runs in
// int8 on an AVX-512 CPU without AVX-VNNI, so that the 256-bit source (its
// AVX2 tanh, tiles and rows) is tested on the machines that have AVX-512.
#if defined(__x86_64__)
#include <cstddef>
#include <cstdint>
#include <utility>
#include <immintrin.h>

#include "../tile_geometry.h"
#include "kernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,avx512f,avx512vl,avx512vnni")
#define ESPCN_ISA avx_vnni_evex
#define ESPCN_ISA_NAME "avx2"
#define ESPCN_FMA256
#define ESPCN_VW 8
#define ESPCN_ACC 12
#define ESPCN_MAXNC 4
#define ESPCN_DOT_ACC 12
#define ESPCN_DOT_INT8_NAME "avx-vnni-evex"
#include "conv_rows.h"
#include "dot_rows.h"
#pragma GCC pop_options
#endif
