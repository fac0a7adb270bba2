#!/usr/bin/env bash
# Every performance number of docs/PERFORMANCE.md in one run, for a GPU box (H100/H200) that
# has PyTorch but not diffusers/open_clip, and no internet.
#
#   scripts/gpu_bench.sh OUT_DIR [WHEEL_DIR]
#
# WHEEL_DIR holds the wheels the core needs; each is installed (pip --no-index --no-deps
# --target OUT_DIR/site-packages) unless that distribution is already importable. Make the
# folder on a machine with internet (same Python version as the GPU box):
#
#   scripts/gpu_bench.sh --wheel-list > wheels.txt
#   pip download --no-deps --only-binary=:all: -d wheels -r wheels.txt
#
# Writes OUT_DIR/{env.json, bench_default.json, bench_xt.json, bench_fp32.json,
# bench_channels_last.json, optimize_memory.json, agreement.json, bench_compile.json,
# bench_256.json} and a .txt table beside each (bench_256.md for the 256x256 step), plus
# OUT_DIR/log.txt. Each step has its own time limit and a failed
# step does not stop the others; the whole run stayed under ~9 minutes on an H100 before the
# 256x256 step was added (its limit is 4 minutes; not yet run on a GPU).
#
# CLIPTERM_BENCH_DRY_RUN=1 runs the same steps on the CPU with tiny settings (to test this
# script); CLIPTERM_BENCH_MODEL=PACK times a pack instead of the random-weight cifar10
# architectures; CLIPTERM_BENCH_SKIP_COMPILE=1 skips the torch.compile step.
set -uo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY=${PYTHON:-python3}

# Distributions `python -m clipterm.bench` imports beyond torch (checked with sys.modules on
# the random-weight cifar10 bench). torchvision must match the box's torch: it is installed
# only if missing.
WHEELS=(diffusers huggingface_hub safetensors filelock regex requests certifi charset-normalizer
        idna urllib3 importlib_metadata zipp PyYAML tqdm packaging open_clip_torch ftfy wcwidth
        timm torchvision pillow numpy typing_extensions httpx2 httpcore2 h11 anyio sniffio truststore)

if [ "${1:-}" = "--wheel-list" ]; then
  "$PY" - "${WHEELS[@]}" <<'EOF'
import sys
from importlib import metadata
for name in sys.argv[1:]:
    try:
        print(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        print(name)
EOF
  exit 0
fi

if [ $# -lt 1 ]; then
  echo "usage: $0 OUT_DIR [WHEEL_DIR]   (or: $0 --wheel-list)" >&2
  exit 2
fi
OUT="$(mkdir -p "$1" && cd "$1" && pwd)"
WHEEL_DIR="${2:-}"
LOG="$OUT/log.txt"
: > "$LOG"
say() { echo "[gpu_bench $(date +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }

# ---------------------------------------------------------------- wheels
SITE="$OUT/site-packages"
if [ -n "$WHEEL_DIR" ]; then
  mkdir -p "$SITE"
  for whl in "$WHEEL_DIR"/*.whl; do
    [ -e "$whl" ] || { say "no wheels in $WHEEL_DIR"; break; }
    dist="$(basename "$whl" | cut -d- -f1)"
    if "$PY" -c "import sys; from importlib import metadata; metadata.version(sys.argv[1])" "$dist" 2>/dev/null; then
      say "have $dist already: skip $(basename "$whl")"
      continue
    fi
    say "install $(basename "$whl")"
    "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --target "$SITE" "$whl" >>"$LOG" 2>&1 \
      || say "FAILED to install $(basename "$whl")"
  done
fi
export PYTHONPATH="$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export TORCHINDUCTOR_CACHE_DIR="$OUT/inductor-cache"

if ! "$PY" -c "import torch, diffusers, open_clip, clipterm.bench" >>"$LOG" 2>&1; then
  say "the core does not import; missing wheels? see $LOG"
  tail -5 "$LOG" >&2
  exit 1
fi

# ---------------------------------------------------------------- settings
if [ "${CLIPTERM_BENCH_DRY_RUN:-0}" = "1" ]; then
  DEVICE=cpu; BATCH=1; TIMED=1; WARM=1; MEM_STEPS=2,4; MEM_BATCH=2
  AGREE_STEPS=2; AGREE_N=2; LIMIT=300; LIMIT_COMPILE=300
  SKIP_COMPILE=${CLIPTERM_BENCH_SKIP_COMPILE:-1}
  BENCH_256=(--tiny --in-process --batch 1 --warmup 1 --timed 1 --cutouts 0,1); LIMIT_256=300
else
  DEVICE=cuda; BATCH=100; TIMED=30; WARM=3; MEM_STEPS=100,1000; MEM_BATCH=8
  AGREE_STEPS=250; AGREE_N=16; LIMIT=150; LIMIT_COMPILE=240
  SKIP_COMPILE=${CLIPTERM_BENCH_SKIP_COMPILE:-0}
  BENCH_256=(--batch 8 --warmup 2 --timed 5 --cutouts 0,1,8,32); LIMIT_256=240
fi
if [ -n "${CLIPTERM_BENCH_MODEL:-}" ]; then
  MODEL=(--model "$CLIPTERM_BENCH_MODEL")
else
  MODEL=(--model cifar10 --random-weights)
fi
COMMON=("${MODEL[@]}" --device "$DEVICE" --batch "$BATCH" --steps-timed "$TIMED" --warmup "$WARM")

"$PY" - "$OUT/env.json" "$DEVICE" <<'EOF' 2>>"$LOG"
import json, platform, subprocess, sys, datetime
import torch
info = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "torch": torch.__version__,
        "cuda": torch.version.cuda, "python": platform.python_version(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.machine()}
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
                                         "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
except (OSError, subprocess.SubprocessError):
    info["nvidia_smi"] = None
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info))
EOF

FAILED=()
step() {  # step NAME LIMIT_S ARGS...
  local name=$1 limit=$2; shift 2
  say "step $name: python -m clipterm.bench $*"
  local t0=$SECONDS
  if timeout --kill-after=10 "$limit" "$PY" -m clipterm.bench "$@" --out "$OUT/$name.json" \
       >"$OUT/$name.txt" 2>>"$LOG"; then
    say "step $name done in $((SECONDS - t0)) s"
  else
    say "step $name FAILED or timed out after $((SECONDS - t0)) s (see $LOG)"
    FAILED+=("$name")
  fi
}

# 1. The headline: every method with the device's default runtime, both baselines, FLOPs.
step bench_default "$LIMIT" "${COMMON[@]}"
# 2. Guidance on the noisy sample (the seed's choice), against the same baselines.
step bench_xt "$LIMIT" "${COMMON[@]}" --methods contrastive,spherical --clip-input xt --no-flops
# 3. Ablations, keeping each option only where it pays: fp32 eager, bf16 + channels_last.
step bench_fp32 "$LIMIT" "${COMMON[@]}" --methods uncond,contrastive,spherical --precision fp32 --no-baselines --no-flops
step bench_channels_last "$LIMIT" "${COMMON[@]}" --methods uncond,contrastive,spherical --precision bf16 --channels-last --no-baselines --no-flops
# 4. x_T optimisation memory at batch 8, with and without per-step checkpointing.
step optimize_memory "$LIMIT" "${MODEL[@]}" --device "$DEVICE" --methods "" --optimize-memory "$MEM_STEPS" --optimize-memory-batch "$MEM_BATCH" --no-baselines --no-flops
# 5. bf16 vs fp32 final images for a fixed seed.
step agreement "$LIMIT" "${MODEL[@]}" --device "$DEVICE" --methods "" --agreement-steps "$AGREE_STEPS" --agreement-n "$AGREE_N" --no-baselines --no-flops
# 6. torch.compile (CUDA graphs): warm-up time is reported, so whether it pays back in a
#    1000-step run can be read off (warmup_s vs the per-step saving x 1000).
if [ "$SKIP_COMPILE" != "1" ]; then
  step bench_compile "$LIMIT_COMPILE" "${COMMON[@]}" --methods uncond,contrastive --compile --no-baselines --no-flops
fi

# 7. The 256x256 DDPMs (church/bedroom/cat/celebahq architecture, random weights): seconds and
#    peak memory per guided step, UNet checkpointing off and on, 0/1/8/32 cutouts.
say "step bench_256: scripts/bench_256.py --device $DEVICE ${BENCH_256[*]}"
t0=$SECONDS
if timeout --kill-after=10 "$LIMIT_256" "$PY" "$REPO/scripts/bench_256.py" --device "$DEVICE" \
     "${BENCH_256[@]}" --out "$OUT/bench_256.json" >"$OUT/bench_256.txt" 2>>"$LOG"; then
  say "step bench_256 done in $((SECONDS - t0)) s"
else
  say "step bench_256 FAILED or timed out after $((SECONDS - t0)) s (see $LOG)"
  FAILED+=("bench_256")
fi

say "results in $OUT: $(cd "$OUT" && ls *.json | tr '\n' ' ')"
if [ ${#FAILED[@]} -gt 0 ]; then
  say "failed steps: ${FAILED[*]}"
  exit 1
fi
exit 0
