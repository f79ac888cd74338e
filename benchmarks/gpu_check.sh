#!/usr/bin/env bash
# One GPU session's checks, in priority order: the gpu-marked tests, the main job on the GPU
# (`nas search --budget-ms 4` with every default), the references' torch-cuda latency under the
# full protocol, and the channel sweep. Each step has its own time limit; a failing step does not
# stop the next. Logs and results go to $OUT (default /tmp/nas_gpu_check) as gpu_check.tar.gz.
#
#   OUT=/tmp/nas_gpu_check bash benchmarks/gpu_check.sh
#
# SKIP_TESTS=1 skips the tests, SKIP_PROBES=1 the reference latencies and the sweep; BENCH=1 adds
# TPE-against-random searches at 1 ms (3 seeds) after the main search.
# Needs PyTorch with CUDA and this project's dependencies importable (pip install -e . or PYTHONPATH).
set -u
OUT=${OUT:-/tmp/nas_gpu_check}
WORK=/tmp/nas_gpu_work
rm -rf "$WORK" && mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 NAS_CACHE_DIR=$WORK/cache
DB="sqlite:///$WORK/latency.db"
mkdir -p "$WORK/bin" && printf '#!/bin/sh\nexec python3 -m nas.cli "$@"\n' >"$WORK/bin/nas" && chmod +x "$WORK/bin/nas"
command -v nas >/dev/null || export PATH="$WORK/bin:$PATH"  # `timeout` needs a program, not a function
step() { echo "=== $(date -u +%H:%M:%S) $*"; }

{
  step "device"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv
  python3 -c "import torch, onnxruntime, optuna; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'cudnn', torch.backends.cudnn.version(), 'onnxruntime', onnxruntime.__version__, 'optuna', optuna.__version__)"
  nproc

  step "gpu tests"
  [ -n "${SKIP_TESTS:-}" ] || timeout 240 python3 -m pytest -q -ra -m "gpu or tensorrt" -p no:cacheprovider tests/test_gpu.py \
    tests/test_latency_gpu.py
  echo "pytest exit $?"

  step "nas search --budget-ms 4 (all defaults: backend auto, input size, trials, training steps)"
  start=$(date +%s.%N)
  timeout 240 nas search --budget-ms 4 --run-dir "$WORK/search4" --latency-db "$DB" --json >"$WORK/search4.json"
  echo "search exit $? wall $(python3 -c "import time; print(round(time.time() - $start, 1))") s"
  cat "$WORK/search4.json"

  if [ -n "${BENCH:-}" ]; then
    # TPE against Optuna's RandomSampler at a budget that bites on this GPU (1 ms at 540x960),
    # same trials and training steps, seeds 0-2, one shared latency database and training cache.
    for seed in 0 1 2; do
      for sampler in tpe random; do
        step "bench: nas search --budget-ms 1 --trials 12 --sampler $sampler --seed $seed"
        timeout 120 nas search --budget-ms 1 --trials 12 --sampler "$sampler" --seed "$seed" --no-report \
          --no-export --run-dir "$WORK/bench1ms/$sampler-seed$seed" --latency-db "$DB" --json \
          >"$WORK/bench1ms_$sampler-seed$seed.json"
        echo "exit $? $(cat "$WORK/bench1ms_$sampler-seed$seed.json")"
      done
    done
  fi

  [ -n "${SKIP_PROBES:-}" ] || {
  step "references, torch-cuda, full protocol, 540x960 fp16"
  python3 - "$WORK" <<'EOF'
import sys
from pathlib import Path
from search_spaces import get_space
for name, spec in get_space("sr2x").references().items():
    Path(sys.argv[1], f"ref_{name}.json").write_text(spec.to_json())
EOF
  for ref in espcn fsrcnn fsrcnn_small tiny; do
    timeout 60 nas latency "$WORK/ref_$ref.json" --backend torch-cuda --protocol full --input-size 540x960 \
      --latency-db "$DB" --json >"$WORK/latency_$ref.json"
    echo "$ref exit $? $(cat "$WORK/latency_$ref.json")"
  done

  step "sweep, torch-cuda, 540x960, 3x3 convs, C = 8..256 step 8"
  timeout 150 nas sweep --backend torch-cuda --latency-db "$DB" --out "$WORK/sweep.html" --json >"$WORK/sweep.json"
  echo "sweep exit $?"
  }
  step "done"
} 2>&1 | tee "$WORK/gpu_check.log"

cp "$WORK/gpu_check.log" "$OUT/"
tar -czf "$OUT/gpu_check.tar.gz" -C "$WORK" --exclude=cache --exclude='*.onnx' --exclude='*.safetensors' \
  --exclude=report.html $(cd "$WORK" && ls -d gpu_check.log search4* sweep.* latency* bench1ms* 2>/dev/null)
