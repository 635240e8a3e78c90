// The CPU kernels compiled for portable; see conv_rows.h.
// Every header goes before the target pragma so that nothing of theirs is
// compiled for this instruction set.
#include <cstddef>
#include <cstdint>
#include <utility>

#include "../tile_geometry.h"
#include "kernels.h"

// no target: the compiler's baseline (SSE2 on x86-64, NEON on aarch64)
#define ESPCN_ISA portable
#define ESPCN_ISA_NAME "portable"
#define ESPCN_VW 4
#define ESPCN_ACC 12
#define ESPCN_MAXNC 4
#include "conv_rows.h"
