#!/usr/bin/env bash
# The GPU check: one command for a GPU machine with no network.
#
#   bash benchmarks/gpu_check.sh [--dry-run] [--stage-data] [--steps a,b,...] [OUTDIR]
#
# Builds the extension in place for the GPU it finds, runs the CUDA (and
# Triton, when present) parity tests, compute-sanitizer memcheck and racecheck
# on a small forward of each kernel, and the 1080p benchmark; writes logs and
# gpu_check.json under OUTDIR (default: $OUT, else benchmarks/results/gpu-check)
# and prints a short table last. Meant to finish within 9 minutes.
#
# Set5 for the fp16/bf16 PSNR test, and the wheels the GPU image lacks (PyAV
# for the video rows): `--stage-data` copies Set5 from the data folder and the
# wheels from the local package index into ./gpu_data (ignored by git; about
# 40 MB), and builds the tile sweep (benchmarks/tile_sweep.cu) there with nvcc;
# copy gpu_data along to the GPU machine so that it travels with the
# working tree. With --stage-data the script stages and stops (run it here).
#
# --dry-run does everything that needs no GPU (CI runs it): checks the tools,
# the scripts and the data, and prints what it would run. --steps runs only
# the steps named (e.g. build,tests,bench after a change, with the time a
# lease has left) and those they need (build for every step that runs our
# kernels, wheels for video, tile_sweep_build for tile_sweep); the others are
# listed as not asked.
#
# Each step has its own cap and a minimum: one that would get less than its
# minimum before the script's deadline is not started ("not run"), one that
# the deadline stops is "cut"; neither counts as a failure.
# (No set -e: a failing step is recorded and the next one runs.)
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
STAGE=0
OUTDIR=""
STEPS=""
NEXT=""
KNOWN_STEPS=",wheels,build,tests,memcheck,racecheck,bench,kernel_profile,tile_sweep,tile_sweep_build,video,bench_compile,"
for arg in "$@"; do
  if [ "$NEXT" = steps ]; then
    STEPS=",$(echo "$arg" | tr -d ' '),"
    NEXT=""
    case "$STEPS" in ,-*|,,) echo "gpu_check: --steps needs a list, e.g. --steps build,tests,bench" >&2; exit 2 ;; esac
    for s in $(echo "$STEPS" | tr ',' ' '); do
      if [ "${KNOWN_STEPS#*,$s,}" = "$KNOWN_STEPS" ]; then
        echo "gpu_check: unknown step '$s'; the steps: $(echo "${KNOWN_STEPS:1:-1}" | tr ',' ' ')" >&2
        exit 2
      fi
    done
    continue
  fi
  case "$arg" in
    --dry-run) DRY=1 ;;
    --stage-data) STAGE=1 ;;
    --steps) NEXT=steps ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    -*) echo "gpu_check: unknown option $arg" >&2; exit 2 ;;
    *) OUTDIR="$arg" ;;
  esac
done
if [ -n "$NEXT" ]; then echo "gpu_check: --steps needs a list, e.g. --steps build,tests,bench" >&2; exit 2; fi
OUTDIR="${OUTDIR:-${OUT:-benchmarks/results/gpu-check}}"
if ! mkdir -p "$OUTDIR" || ! OUTDIR=$(cd "$OUTDIR" && pwd); then
  echo "gpu_check: cannot use $OUTDIR as the output folder" >&2
  exit 2
fi
PY="${PYTHON:-python}"
command -v "$PY" >/dev/null || PY=python3
source benchmarks/gpu_check_lib.sh  # step, needs, publish
# Steps that run our kernels need the extension built on this machine, and
# the video step PyAV from the carried wheels.
for s in tests memcheck racecheck bench kernel_profile video bench_compile; do needs "$s" build; done
needs video wheels
needs tile_sweep tile_sweep_build
# On a remote runner ($OUT, 8 files back, killed at its limit) the logs are
# written elsewhere and published into $OUT after every step (publish).
PUBLISH=0
LOGDIR="$OUTDIR"
if [ "$DRY" = 0 ] && [ -n "${OUT:-}" ] && [ "$OUTDIR" = "$(cd "$OUT" 2>/dev/null && pwd)" ]; then
  PUBLISH=1
  LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
fi
KEEP="gpu_check.json steps.tsv tests.log bench.json tile_sweep.json kernel_profile.log"
STATUS="$LOGDIR/steps.tsv"
: > "$STATUS"
START=$(date +%s)
DEADLINE=${GPU_CHECK_SECONDS:-540}  # a remote runner allows 600 s a command; leave time for the summary

# Data: Set5 and its x3 LR inputs, from gpu_data/ (carried) or the data folder.
if [ "$STAGE" = 1 ]; then
  SRC="${ESPCN_FAST_DATA:-../shared/data}"
  mkdir -p gpu_data/LR_bicubic
  cp -r "$SRC/Set5" gpu_data/ && cp -r "$SRC/LR_bicubic/Set5" gpu_data/LR_bicubic/ \
    && echo "gpu_check: staged Set5 from $SRC into gpu_data/ (carry it: gpu_data)"
  "$PY" -m pip download -q --no-deps -d gpu_data/wheels av==18.1.0 2>&1 | grep -v "^WARNING" \
    ; ls gpu_data/wheels 2>/dev/null
  # The tile sweep needs nvcc only: built here, it costs the GPU machine no build time.
  bash benchmarks/gpu_check_sweep_build.sh 9.0 gpu_data/tile_sweep \
    && echo "gpu_check: built gpu_data/tile_sweep (sm_90, the Hopper kernel sm_90a)"
  du -sh gpu_data
  exit 0  # staging is done here; the check itself runs on the GPU machine
fi
if [ -d gpu_data/Set5 ]; then
  export ESPCN_FAST_DATA="$PWD/gpu_data"
  echo "gpu_check: Set5 found in gpu_data/"
elif [ -n "${ESPCN_FAST_DATA:-}" ] && [ -d "$ESPCN_FAST_DATA/Set5" ] || [ -d ../shared/data/Set5 ]; then
  echo "gpu_check: Set5 found in the data folder"
else
  echo "gpu_check: Set5 is ABSENT (no gpu_data/ carried): the fp16/bf16 PSNR test will skip;" \
       "run with --stage-data here and pass carry=[\"gpu_data\"]"
fi

# Tools.
SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
echo "gpu_check: nvcc: $(command -v nvcc || echo absent); compute-sanitizer: ${SANITIZER:-absent}"
if [ "$DRY" = 1 ]; then
  "$PY" -m py_compile benchmarks/sanitize_forward.py benchmarks/gpu_summary.py benchmarks/run.py || exit 1
  "$PY" benchmarks/run.py --help > /dev/null || exit 1
else
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv > "$LOGDIR/gpu.txt" 2>&1
  "$PY" -c "import torch, sys; print(sys.version); print('torch', torch.__version__, torch.version.cuda)" >> "$LOGDIR/gpu.txt" 2>&1
  "$PY" -c "import triton; print('triton', triton.__version__)" >> "$LOGDIR/gpu.txt" 2>&1
  cat "$LOGDIR/gpu.txt"
  publish
fi

# Wheels carried in gpu_data/wheels (no network there).
if ls gpu_data/wheels/*.whl > /dev/null 2>&1; then
  step wheels 60 10 "$PY" -m pip install -q --no-index --no-deps gpu_data/wheels/*.whl
fi

# Build for this GPU only, keeping ptxas' report in the log: pip shows the
# compiler's output only with -v, and setup.py leaves a TORCH_CUDA_ARCH_LIST
# already set (an image may set one for many GPUs) in place of ESPCN_FAST_CUDA_ARCH.
ARCH=$("$PY" -c "import torch; c = torch.cuda.get_device_capability() if torch.cuda.is_available() else (9, 0); print(f'{c[0]}.{c[1]}')" 2>/dev/null || echo 9.0)
step build 240 60 env ESPCN_FAST_CUDA_ARCH="$ARCH" TORCH_CUDA_ARCH_LIST="$ARCH" FORCE_CUDA=1 MAX_JOBS=16 \
  "$PY" -m pip install -v --no-build-isolation --no-deps -e .

# Parity: CUDA kernels (and Triton's, where its tests exist), every precision.
# (Not the compile-only checks, test_cuda_build.py and test_triton_compile.py:
# CI runs them, and here they would spend a minute of CPU on nvcc and ptxas.)
TESTS="tests/test_ops_cuda.py tests/test_hopper_cuda.py tests/test_triton.py"
# (Triton's autotuning is for the benchmark; the tests use one fixed configuration.)
step tests 200 60 env ESPCN_FAST_TRITON_AUTOTUNE=0 "$PY" -m pytest -q -rs -p no:cacheprovider --junitxml="$LOGDIR/tests.xml" $TESTS

# compute-sanitizer on a small forward of each kernel (caching allocator off,
# so that out-of-bounds accesses are not hidden inside a larger block).
# Some hosts (VMs, MIG) do not let the sanitizer attach: "Device not
# supported", or CUDA error 999 (unknown) at the first call. That is
# "unsupported", not a finding.
SANITIZER_UNSUPPORTED='Device not supported|error 999|[(]999[)]|CUDA_ERROR_UNKNOWN|CUDA error: unknown error'
if [ -n "$SANITIZER" ]; then
  UNSUPPORTED=$SANITIZER_UNSUPPORTED step memcheck 90 30 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
    "$SANITIZER" --tool memcheck --error-exitcode 1 "$PY" benchmarks/sanitize_forward.py
  UNSUPPORTED=$SANITIZER_UNSUPPORTED step racecheck 90 30 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
    "$SANITIZER" --tool racecheck --error-exitcode 1 "$PY" benchmarks/sanitize_forward.py
else
  for s in memcheck racecheck; do record "$s" "$(asked "$s" && echo absent || echo not-asked)" 0; done
fi

# 1080p: every backend and eager at x2/x3/x4 batch 1 and 8; the slow
# torch.compile max-autotune peers at x3 batch 1 only (each compiles for a
# minute), last, with whatever time is left, with ONNX Runtime's CUDA
# provider and OpenCV (each listed as skipped, with the reason, where absent).
# (run.py rewrites its JSON after every row: a bench cut short keeps the rows it measured.)
step bench 150 40 "$PY" benchmarks/run.py --device cuda --scales 2 3 4 --batch 1 8 --budget 0.5 \
  --backends espcn_fast:cuda espcn_fast:cuda-layers espcn_fast:triton eager "eager channels_last" "eager autocast" \
  --json "$LOGDIR/bench.json"
# Which kernels each GPU row's time is made of (x3 batch 1).
# (--device cuda: without it, a machine whose torch sees no GPU would profile the CPU and pass.)
step kernel_profile 90 30 "$PY" benchmarks/kernel_profile.py --device cuda --json "$LOGDIR/kernel_profile.json"
# Tile shapes of the fused kernel, each checked and timed (gpu_data/tile_sweep
# from --stage-data; built here for this GPU when it was not carried).
# (A binary built here may not load against the GPU image's libraries: probed first.)
SWEEP=gpu_data/tile_sweep
if [ ! -x "$SWEEP" ] || [ "$ARCH" != 9.0 ] || { [ "$DRY" = 0 ] && ! "$SWEEP" --probe; }; then
  SWEEP="${TMPDIR:-/tmp}/espcn_tile_sweep"  # not in LOGDIR: 5 MB in the archive for nothing
  step tile_sweep_build 120 90 bash benchmarks/gpu_check_sweep_build.sh "$ARCH" "$SWEEP"
fi
# (It writes tile_sweep.json.part as it goes, renamed to .json at the end; the summary reads either.)
step tile_sweep 90 30 "$SWEEP" --json "$LOGDIR/tile_sweep.json"
# End-to-end video at 1080p out: the pipeline against the network alone.
"$PY" -c "import av" 2> /dev/null || [ "$DRY" = 1 ] || echo "gpu_check: PyAV is absent (stage gpu_data/wheels): the video step will fail"
step video 90 40 "$PY" benchmarks/video_pipeline.py --device cuda --precision fp16 --batch 4 --frames 120 \
  --json "$LOGDIR/video.json"

# (90 s at least: each torch.compile max-autotune row compiles for about a minute.)
step bench_compile 200 90 "$PY" benchmarks/run.py --device cuda --scales 3 --batch 1 --budget 0.5 \
  --backends espcn_fast:cuda eager "torch.compile max-autotune" "torch.compile" "onnxruntime cuda" "opencv dnn" \
  --json "$LOGDIR/bench_compile.json"
echo "gpu_check: $(( $(date +%s) - START )) s"
"$PY" benchmarks/gpu_summary.py "$LOGDIR" $([ "$DRY" = 1 ] && echo --dry-run)
RC=$?
publish
if [ "$PUBLISH" = 1 ]; then
  if [ -f "$OUTDIR/all.tar.gz" ]; then
    echo "gpu_check: every log is in $OUTDIR/all.tar.gz"
    rm -rf "$LOGDIR"
  else
    echo "gpu_check: no archive could be made (tar/gzip); the logs stay in $LOGDIR" >&2
  fi
fi
exit $RC
