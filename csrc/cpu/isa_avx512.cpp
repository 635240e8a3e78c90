// The CPU kernels compiled for avx512; see conv_rows.h.
#if defined(__x86_64__)
// Every header goes before the target pragma so that nothing of theirs is
// compiled for this instruction set.
#include <cstddef>
#include <cstdint>
#include <utility>
#include <immintrin.h>

#include "../tile_geometry.h"
#include "kernels.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
#define ESPCN_ISA avx512
#define ESPCN_ISA_NAME "avx512"
#define ESPCN_FMA512
#define ESPCN_VW 16
#define ESPCN_ACC 16
#define ESPCN_MAXNC 8
#include "conv_rows.h"
#pragma GCC pop_options
#endif
