#!/usr/bin/env bash
# The one device run behind the GPU figures in docs/PERFORMANCE.md (issues 11 and 27).
# On the GPU machine, from a copy of the checkout with the wheels of
# ../shared/device/README.md in $WHEELS:
#   WHEELS=.whl OUT=/tmp/out bash benchmarks/run_on_gpu.sh
# Anywhere, the same steps at smoke sizes on the CPU, in the current environment (no wheels
# installed; extra arguments go to bench_gpu.py): tests/test_benchmarks.py runs this.
#   OUT=/tmp/out bash benchmarks/run_on_gpu.sh --cpu-smoke [--model local-dir:DIR]
# Exits non-zero when a step fails; each step's log and JSON are left in $OUT.
set -o pipefail
PY=${PYTHON:-python3}  # the interpreter to run (the test passes its own)
OUT=${OUT:-/tmp/clipseek-gpu-out}
WHEELS=${WHEELS:-.whl}
mode=gpu
if [ "${1:-}" = "--cpu-smoke" ]; then
  mode=cpu
  shift
fi
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
start=$(date +%s)
status=0
if [ "$mode" = gpu ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$here
  bench_args=(--json "$OUT/gpu.json")
  store_args=(--n 1000000)
else
  export PYTHONPATH=$here${PYTHONPATH:+:$PYTHONPATH}
  bench_args=(--quick --device cpu --json "$OUT/gpu.json" "$@")
  store_args=(--n 2000 --queries 20 --centres 50)
fi
export HF_HUB_OFFLINE=1 ANONYMIZED_TELEMETRY=False PYTHONUNBUFFERED=1
export CLIPSEEK_BENCH_CACHE=${CLIPSEEK_BENCH_CACHE:-/tmp/clipseek-bench}
echo "mode $mode; pip: $(( $(date +%s) - start )) s" | tee "$OUT/setup.log"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$OUT/setup.log"
else
  echo "no nvidia-smi" | tee -a "$OUT/setup.log"
fi
"$PY" -c "import chromadb, open_clip, platformdirs; print('imports ok')" 2>&1 \
  | tee -a "$OUT/setup.log" || exit 1
timeout "${GPU_BENCH_LIMIT:-300}" "$PY" "$here/benchmarks/bench_gpu.py" "${bench_args[@]}" 2>&1 \
  | tee "$OUT/bench_gpu.log" || status=1
echo "bench_gpu done at $(( $(date +%s) - start )) s (status $status)" | tee -a "$OUT/setup.log"
left=$(( ${TOTAL_LIMIT:-520} - ($(date +%s) - start) ))
if [ "$left" -gt 90 ]; then
  timeout "$(( left - 10 ))" "$PY" "$here/benchmarks/bench_store_million.py" "${store_args[@]}" \
    --time-limit "$(( left - 90 ))" --json "$OUT/store.json" 2>&1 | tee "$OUT/store.log" || status=1
else
  echo "no time left for bench_store_million.py" | tee -a "$OUT/setup.log"
  status=1
fi
echo "all done at $(( $(date +%s) - start )) s (status $status)" | tee -a "$OUT/setup.log"
exit $status
