// The bf16 and int8 CPU kernels (dot_rows.h), compiled for AVX-512 with the
// BF16 and VNNI extensions; dispatch.cpp calls them only where cpuid has both
// the base AVX-512 sets and the one the precision needs.
#if defined(__x86_64__)
#include <cstddef>
#include <cstdint>
#include <utility>
#include <immintrin.h>

#include "../tile_geometry.h"
#include "kernels.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx512vnni,avx512bf16,avx2,fma")
#define ESPCN_ISA avx512_dot
#define ESPCN_ISA_NAME "avx512"
#define ESPCN_FMA512
#define ESPCN_VW 16
#define ESPCN_ACC 16
#define ESPCN_MAXNC 8
#define ESPCN_DOT_ACC 24
#define ESPCN_DOT_BF16
#define ESPCN_DOT_INT8_NAME "avx512-vnni"
#include "conv_rows.h"
#include "dot_rows.h"
#pragma GCC pop_options
#endif
