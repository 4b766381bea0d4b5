"""Where `clipseek check` spends its time and memory, phase by phase, on an existing index.

    python benchmarks/bench_check_phases.py DB [--sample N | --full]

Runs ``repair.check`` once in this process (the code on PYTHONPATH) with each phase's
function wrapped in a timer, and prints the wall time of each, this process's peak RSS
(VmHWM) and the self-search child's (``RUSAGE_CHILDREN``), and the CPU time of each: on a
busy machine the wall time is mostly waiting for a core. The self-search runs beside the
metadata check, so the phases add up to more than the total.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header


def peak_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("db", type=Path)
    parser.add_argument("--sample", type=int, default=None)
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()
    header(f"clipseek check, phase by phase, on {args.db}")
    start = time.perf_counter()
    from clipseek.store import Store, repair

    spent: dict[str, float] = defaultdict(float)

    def timed(owner: object, name: str, label: str) -> None:
        real = getattr(owner, name)

        def wrapper(*a: object, **k: object) -> object:
            t = time.perf_counter()
            try:
                return real(*a, **k)
            finally:
                spent[label] += time.perf_counter() - t

        setattr(owner, name, wrapper)

    timed(repair, "find_damage", "find_damage (links, norms, label map)")
    timed(repair, "read_columns", "read_columns (ids, vector files, log)")
    timed(repair, "_check_vectors", "records vs vectors")
    timed(repair, "_wrong_metadata", "metadata vs path")
    timed(repair, "_check_caches", "vector cache vs Chroma")
    timed(repair, "_sample_payload", "sample for the child")
    timed(repair, "take_snapshot", "snapshot")
    timed(repair._SelfSearch, "finish", "waiting for the self-search")
    sample = None if args.full else (args.sample or repair.CHECK_SAMPLE)
    report = repair.check(Store(str(args.db), create=False), sample=sample)
    total = time.perf_counter() - start
    for label, seconds in spent.items():
        print(f"  {label}: {seconds:.2f} s")
    own = resource.getrusage(resource.RUSAGE_SELF)
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"total {total:.2f} s wall; CPU {own.ru_utime + own.ru_stime:.1f} s here, "
        f"{child.ru_utime + child.ru_stime:.1f} s in the self-search child; peak RSS "
        f"{peak_mb():,.0f} MB here, {child.ru_maxrss / 1024:,.0f} MB in the child; "
        f"{report.records:,} records, {report.found_self:,} found themselves; "
        f"healthy {report.healthy} {report.problems}"
    )


if __name__ == "__main__":
    main()
