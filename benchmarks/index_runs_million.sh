#!/bin/bash
# `clipseek index` runs over the million-file library of `bench_store_million.py --tree`, as
# fresh processes, each timed with its peak RSS: the unchanged tree (the first run after a
# write, and again), 1,000 new files, the unchanged tree after them, the same 1,000 alone into
# an empty store (the model's share), the 1,000 removed again and the unchanged tree after.
#
#   python benchmarks/bench_store_million.py --tree --n 1000000 --dir /tmp/scale/s1m --build-only
#   bash benchmarks/index_runs_million.sh /tmp/scale/s1m
#
# The 1,000 pictures are made once beside the library (numbers 1,000,000 to 1,000,999).
set -euo pipefail
ROOT=${1:?usage: index_runs_million.sh LIBRARY_DIR (photos/, model/, store/ inside)}
HERE=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$HERE/..${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 ANONYMIZED_TELEMETRY=False
M=(--model "local-dir:$ROOT/model")
ADDED="$ROOT/added-1000"
if [ ! -d "$ADDED" ]; then
    python -c "import sys; sys.path.insert(0, '$HERE')
from pathlib import Path
from bench_store_million import make_tree
make_tree(Path('$ADDED'), 1_000_000, 1000)"
fi
run() {
    echo "== $1 (load $(cut -d' ' -f1 /proc/loadavg))"
    shift
    /usr/bin/time -f "   wall %e s, peak %M KB" python -m clipseek "$@" 2>&1 | tail -3
}
run "unchanged, first after a write" index "$ROOT/photos" "${M[@]}" --db "$ROOT/store"
run "unchanged, again" index "$ROOT/photos" "${M[@]}" --db "$ROOT/store"
mv "$ADDED" "$ROOT/photos/added"
run "+1000 files" --debug index "$ROOT/photos" "${M[@]}" --db "$ROOT/store"
run "unchanged after +1000" index "$ROOT/photos" "${M[@]}" --db "$ROOT/store"
rm -rf "$ROOT/alone"
run "the 1000 alone, empty store" index "$ROOT/photos/added" "${M[@]}" --db "$ROOT/alone"
rm -rf "$ROOT/alone"
mv "$ROOT/photos/added" "$ADDED"
run "-1000 files" index "$ROOT/photos" "${M[@]}" --db "$ROOT/store"
run "unchanged after -1000" index "$ROOT/photos" "${M[@]}" --db "$ROOT/store"
