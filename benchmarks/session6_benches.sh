#!/bin/bash
# The cheap cells of #25's and #26's grids (reports/finalists.md and reports/int8.md, "2026-12-05"), run on the
# latency databases of the earlier benches so that each bench measures and trains only what it adds:
#   B7: the folder of the 8 ms seed-7 benches (its lat.db), B8: the folder of the seed-8 benches (its lat.db).
# Usage: benchmarks/session6_benches.sh B7 B8 OUT   (nothing else running: these time latencies)
set -eu
B7=$1; B8=$2; OUT=$3
mkdir -p "$OUT"
git rev-parse --short HEAD > "$OUT/commit"
lscpu | grep -E "Model name|Model:|CPU family|Flags" > "$OUT/cpu.txt"
run() {  # name, then nas bench arguments
  name=$1; shift
  date -u +%FT%TZ > "$OUT/$name.start"
  nas bench --samplers evolution,random --trials 24 --long-steps 1000 --backend onnxruntime "$@" \
    --out "$OUT/$name" --json > "$OUT/$name.json" 2> "$OUT/$name.err"
  date -u +%FT%TZ > "$OUT/$name.end"
}
# #26: 4 ms seed 8, fp32,int8 (its fp32 twin: the seed-8 4 ms bench with finalists off)
run int8_4ms_s8 --budgets 4 --seeds 8 --finalists 0 --precision fp32,int8 --latency-db "$B8/lat.db"
# #25: 8 ms seeds 7 and 8 with 3 finalists of 1000 steps (their finalists-off twins: the fp32 8 ms benches)
run fin3_8ms_s7 --budgets 8 --seeds 7 --finalists 3 --final-steps 1000 --precision fp32 --latency-db "$B7/lat.db"
run fin3_8ms_s8 --budgets 8 --seeds 8 --finalists 3 --final-steps 1000 --precision fp32 --latency-db "$B8/lat.db"
