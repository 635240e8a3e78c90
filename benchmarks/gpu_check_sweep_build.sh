#!/usr/bin/env bash
# Builds the tile sweep (benchmarks/tile_sweep.cu) with nvcc alone, for one GPU:
#
#   bash benchmarks/gpu_check_sweep_build.sh ARCH OUTPUT     (ARCH as torch writes it: 9.0, 8.6, ...)
#
# For 9.0 the Hopper kernel (csrc/cuda/espcn_hopper.cu) is compiled apart for
# sm_90a (the only target with wgmma and TMA; a plain sm_90 pass rejects
# wgmma) and linked in, with ESPCN_WITH_HOPPER: the sweep then times it beside
# the 14x30 family, and its "today's" rows launch what the extension built for
# 9.0 launches. gpu_check.sh runs it (--stage-data, and the tile_sweep_build step).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 2 ]; then
  echo "usage: $0 ARCH OUTPUT" >&2
  exit 2
fi
ARCH=$1
OUTPUT=$2
SOURCES="csrc/cuda/espcn_fused.cu csrc/cuda/espcn_fused_fp32.cu csrc/cuda/espcn_fused_tf32.cu
  csrc/cuda/espcn_fused_fp16.cu csrc/cuda/espcn_fused_bf16.cu"
if [ "$ARCH" = 9.0 ]; then
  OBJ=$(mktemp "${TMPDIR:-/tmp}/espcn_hopper.XXXXXX.o")
  trap 'rm -f "$OBJ"' EXIT
  nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -Xptxas -v -c -o "$OBJ" csrc/cuda/espcn_hopper.cu
  # shellcheck disable=SC2086
  nvcc -std=c++17 -O3 -arch=sm_90 -DESPCN_WITH_HOPPER -o "$OUTPUT" benchmarks/tile_sweep.cu $SOURCES "$OBJ"
else
  # shellcheck disable=SC2086
  nvcc -std=c++17 -O3 -arch="sm_${ARCH/./}" -o "$OUTPUT" benchmarks/tile_sweep.cu $SOURCES
fi
