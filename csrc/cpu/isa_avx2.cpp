// The CPU kernels compiled for avx2; see conv_rows.h.
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
#pragma GCC target("avx2,fma")
#define ESPCN_ISA avx2
#define ESPCN_ISA_NAME "avx2"
#define ESPCN_FMA256
#define ESPCN_VW 8
#define ESPCN_ACC 12
#define ESPCN_MAXNC 4
#include "conv_rows.h"
#pragma GCC pop_options
#endif
