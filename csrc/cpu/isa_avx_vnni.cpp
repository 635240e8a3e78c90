// The int8 CPU kernels (dot_rows.h) on 256-bit vectors with AVX-VNNI, the
// VEX form of vpdpbusd that CPUs without AVX-512 have; dispatch.cpp calls them
// only where cpuid has AVX2, FMA and AVX-VNNI. isa_avx_vnni_evex.cpp builds
// the same source with the EVEX form, for CPUs with AVX512-VNNI.
#if defined(__x86_64__)
#include <cstddef>
#include <cstdint>
#include <utility>
#include <immintrin.h>

#include "../tile_geometry.h"
#include "kernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,avxvnni")
#define ESPCN_ISA avx_vnni
#define ESPCN_ISA_NAME "avx2"
#define ESPCN_FMA256
#define ESPCN_VW 8
#define ESPCN_ACC 12
#define ESPCN_MAXNC 4
#define ESPCN_DOT_ACC 12
#define ESPCN_VNNI_VEX
#define ESPCN_DOT_INT8_NAME "avx-vnni"
#include "conv_rows.h"
#include "dot_rows.h"
#pragma GCC pop_options
#endif
