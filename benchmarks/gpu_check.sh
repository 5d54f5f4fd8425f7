#!/usr/bin/env bash
# One GPU check for a lent CUDA machine, about 4 minutes on one GPU. It runs:
#   1. the `gpu`-marked tests;
#   2. CUDA training through the CLI, killed (SIGKILL) after a checkpoint, then `--resume`d,
#      compared with an uninterrupted run of the same configuration: the weights must agree
#      within RESUME_TOLERANCE (relative to the largest weight; default 1e-4), not bitwise,
#      since MMT's backward (scatter_add_) and cuDNN are not deterministic on CUDA;
#      bitwise equality is reported as well;
#   3. AMP training steps in float16 (GradScaler) and bfloat16;
#   4. torch.compile(fullgraph=True) of the MMT loss and of MAG, against eager;
#   5. the loss and MAG hot paths under torch.cuda.set_sync_debug_mode("error");
#   6. every benchmark in benchmarks/ on CUDA.
# Every figure goes to ONE file: $OUT/gpu_check.txt when OUT is set (the device tool's output
# folder), else benchmarks/gpu_results/gpu_check-<UTC time>.txt (git-ignored). Sections run on
# even when one fails; the script exits 1 if any failed, and the file ends with a summary.
#
# The device machine has no network and may lack kornia (and kornia-rs). Carry wheels:
#   here, once:  bash benchmarks/gpu_check.sh --fill-wheels     (pip download into wheels/,
#                git-ignored; for the device's Python, 3.12 by default: WHEEL_PYTHON=3.12)
#   then:        the device tool's `run` with carry=["wheels"] and the command
#                bash benchmarks/gpu_check.sh
#   Wheels are installed (--no-index, into /tmp/gpu_check_site) only for distributions the
#   machine lacks.
# Here, without a GPU:  bash benchmarks/gpu_check.sh --dry-run   (the same sections on the CPU
# with tiny sizes; checks the script, not the GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
DEVICE=cuda
SMALL=""
WHEELS="kornia==0.9.0 kornia-rs==0.2.0 hypothesis pytest tqdm sortedcontainers attrs iniconfig pluggy packaging"

case "${1:-}" in
  --fill-wheels)
    mkdir -p wheels
    for spec in $WHEELS; do
      "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "${WHEEL_PYTHON:-3.12}" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform any -d wheels "$spec" || { echo "could not fetch $spec" >&2; exit 1; }
    done
    ls -l wheels
    exit 0 ;;
  --dry-run) DEVICE=cpu; SMALL=--small ;;
  --_resume-check) DEVICE=$2; WORK=$3 ;;  # internal: section 2, run under `timeout`
  "") ;;
  *) echo "usage: $0 [--dry-run | --fill-wheels]" >&2; exit 2 ;;
esac

# --- section 2's body: train, kill, --resume, compare (run in its own process, under timeout)
STEPS=$([ "$DEVICE" = cuda ] && echo 30 || echo 3)
TRAIN=("$PY" -m mag_mmt.cli train --data synthetic --model small-cnn --epochs 2 --steps-per-epoch "$STEPS"
       -P 4 -K 2 --seed 7 --device "$DEVICE" --no-progress --eval-every 0)
resume_check() {
  "${TRAIN[@]}" --out "$WORK/straight" >"$WORK/straight.log" 2>&1 || { cat "$WORK/straight.log"; return 1; }
  # the interrupted run checkpoints every 2 steps and is SIGKILLed once its first checkpoint exists
  "${TRAIN[@]}" --out "$WORK/killed" --checkpoint-every 2 >"$WORK/killed.log" 2>&1 &
  local pid=$! waited=0
  while [ ! -f "$WORK/killed/last.pt" ] && kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 600 ]; do
    sleep 0.1; waited=$(( waited + 1 ))
  done
  kill -9 "$pid" 2>/dev/null && echo "killed the run after its first checkpoint"
  wait "$pid" 2>/dev/null
  "$PY" -c "import torch; s = torch.load('$WORK/killed/last.pt', weights_only=False); print('checkpoint at step', s['step'])"
  "${TRAIN[@]}" --out "$WORK/killed" --resume >"$WORK/resumed.log" 2>&1 || { cat "$WORK/resumed.log"; return 1; }
  grep -m1 "resumed from" "$WORK/resumed.log"
  "$PY" benchmarks/gpu_check.py compare "$WORK/straight/last.pt" "$WORK/killed/last.pt" \
    --tolerance "${RESUME_TOLERANCE:-1e-4}"
}
if [ "${1:-}" = --_resume-check ]; then
  export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
  resume_check
  exit $?
fi

if [ -n "${OUT:-}" ]; then
  RESULTS=$OUT/gpu_check.txt
else
  mkdir -p benchmarks/gpu_results
  RESULTS=$ROOT/benchmarks/gpu_results/gpu_check-$(date -u +%Y%m%dT%H%M%SZ)$([ "$DEVICE" = cpu ] && echo -dry-run).txt
fi
WORK=$(mktemp -d)
: >"$RESULTS"
say() { echo "$*" | tee -a "$RESULTS"; }
declare -a SUMMARY=()
FAILED=0

# section NAME TIMEOUT_S COMMAND...: run it, its output into the results file, time and status kept
section() {
  local name=$1 limit=$2; shift 2
  say ""
  say "=== $name"
  local t0=$SECONDS rc
  timeout "$limit" "$@" 2>&1 | tee -a "$RESULTS"
  rc=${PIPESTATUS[0]}
  local took=$(( SECONDS - t0 ))
  [ "$rc" -eq 124 ] && say "(timed out after ${limit} s)"
  SUMMARY+=("$(printf '%-28s %s  %4d s' "$name" "$([ "$rc" -eq 0 ] && echo ok || echo "FAILED (exit $rc)")" "$took")")
  [ "$rc" -eq 0 ] || FAILED=1
  return 0
}

# --- Python packages: install carried wheels for what is missing
if [ -d wheels ] && ls wheels/*.whl >/dev/null 2>&1; then
  mapfile -t missing < <("$PY" - wheels/*.whl <<'PY'
import importlib.metadata as md, re, sys
for path in sys.argv[1:]:
    dist = re.sub(r"[-_.]+", "-", path.rsplit("/", 1)[-1].split("-")[0]).lower()
    try:
        md.version(dist)
    except md.PackageNotFoundError:
        print(path)
PY
)
  if [ "${#missing[@]}" -gt 0 ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/gpu_check_site "${missing[@]}" \
      && export PYTHONPATH=/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}
  fi
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1

say "gpu_check.sh $(date -u +%FT%TZ), device=$DEVICE"
"$PY" - <<'PY' 2>&1 | tee -a "$RESULTS"
import platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, cuda available {torch.cuda.is_available()}")
if torch.cuda.is_available():
    print("gpu:", torch.cuda.get_device_name(), f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
for name in ("kornia", "numpy", "PIL", "hypothesis", "pytest"):
    try:
        module = __import__(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except ImportError as exc:
        print(f"{name}: MISSING ({exc})")
PY
if [ "$DEVICE" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  say "no CUDA device: run with --dry-run on a machine without one"
  exit 2
fi

# --- 1. gpu-marked tests
if [ "$DEVICE" = cuda ]; then
  section "pytest -m gpu" 120 "$PY" -m pytest -q -m gpu -p no:cacheprovider -o addopts="-ra"
else
  section "pytest -m gpu (collect)" 120 "$PY" -m pytest -q -m gpu -p no:cacheprovider -o addopts="-ra" --collect-only
fi

# --- 2. train -> kill -> --resume against an uninterrupted run (resume_check above)
section "train, kill, --resume" 240 bash "$0" --_resume-check "$DEVICE" "$WORK"

# --- 3-5. AMP, compile, syncs
section "amp float16" 60 "$PY" benchmarks/gpu_check.py amp float16 --device "$DEVICE" $SMALL
section "amp bfloat16" 60 "$PY" benchmarks/gpu_check.py amp bfloat16 --device "$DEVICE" $SMALL
section "compile fullgraph" 180 "$PY" benchmarks/gpu_check.py compile --device "$DEVICE" $SMALL
section "no host sync" 60 "$PY" benchmarks/gpu_check.py sync --device "$DEVICE" $SMALL

# --- 6. the benchmarks
if [ "$DEVICE" = cuda ]; then
  section "bench_loss" 180 "$PY" benchmarks/bench_loss.py --device cuda --naive-pair --sizes 64 256 1024 4096
  section "bench_augment" 90 "$PY" benchmarks/bench_augment.py --device cuda --uint8
  section "bench_eval" 120 "$PY" benchmarks/bench_eval.py --device cuda --quick
  section "bench_transforms" 120 "$PY" benchmarks/bench_transforms.py --device cuda
else
  section "bench_loss" 180 "$PY" benchmarks/bench_loss.py --device cpu --sizes 64 --repeats 1 --memory-n 512
  section "bench_augment" 180 "$PY" benchmarks/bench_augment.py --device cpu --quick --batch 8
  section "bench_eval" 300 "$PY" benchmarks/bench_eval.py --device cpu --quick
  section "bench_transforms" 300 "$PY" benchmarks/bench_transforms.py --device cpu --quick --batch 8
fi

say ""
say "=== summary ($DEVICE)"
for line in "${SUMMARY[@]}"; do say "$line"; done
say "results: $RESULTS"
rm -rf "$WORK"
exit "$FAILED"
