#!/usr/bin/env bash
# The one device run behind the GPU figures in docs/PERFORMANCE.md (issue 11).
# From a copy of the checkout with the wheels of ../shared/device/README.md in $WHEELS:
#   WHEELS=../.whl OUT=/tmp/out bash benchmarks/run_on_gpu.sh
set -o pipefail
OUT=${OUT:-/tmp/clipseek-gpu-out}
WHEELS=${WHEELS:-.whl}
mkdir -p "$OUT"
start=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site "$WHEELS"/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 ANONYMIZED_TELEMETRY=False PYTHONUNBUFFERED=1
export CLIPSEEK_BENCH_CACHE=${CLIPSEEK_BENCH_CACHE:-/tmp/clipseek-bench}
echo "pip: $(( $(date +%s) - start )) s" | tee "$OUT/setup.log"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$OUT/setup.log"
python3 -c "import chromadb, open_clip, platformdirs; print('imports ok')" 2>&1 | tee -a "$OUT/setup.log" || exit 1
timeout "${GPU_BENCH_LIMIT:-300}" python3 benchmarks/bench_gpu.py --json "$OUT/gpu.json" 2>&1 \
  | tee "$OUT/bench_gpu.log"
echo "bench_gpu done at $(( $(date +%s) - start )) s" | tee -a "$OUT/setup.log"
left=$(( ${TOTAL_LIMIT:-520} - ($(date +%s) - start) ))
if [ "$left" -gt 90 ]; then
  timeout "$(( left - 10 ))" python3 benchmarks/bench_store_million.py --n 1000000 \
    --time-limit "$(( left - 90 ))" --json "$OUT/store.json" 2>&1 | tee "$OUT/store.log"
fi
echo "all done at $(( $(date +%s) - start )) s" | tee -a "$OUT/setup.log"
