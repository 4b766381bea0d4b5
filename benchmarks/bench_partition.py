"""The approximate index beside the vector cache (store/partition.py, issue 24), on a store
made by ``bench_store_million.py`` (copy it first: this writes the partition into it).

- build: ``refresh_caches`` as an index run ends, with the partition (time, files);
- warm searches of a long-lived reader (the app, ``clipseek serve``): the approximate
  reader and the exact one in the same process, taking turns query by query, over the same
  queries; p50/p95 of each, recall@10 of the approximate answers against the exact ones,
  and the same at other ``NPROBE`` values; then the reader's memory at rest (VmRSS, in a
  fresh process that answered the queries). The text encoder is not included;
- ``clipseek duplicates`` (``find_duplicates`` at 0.95 through the direct reader, one
  process each): this checkout through the partition (``EXACT_LIMIT`` set below the
  store's size so the large-library path runs) against ``--baseline`` (another checkout,
  e.g. main, whatever path its code takes at this size), and the planted near-copies each
  finds (bench_store_million plants one every 500 rows: row 500 m + 1 copies row 500 m).

    cp -a /tmp/scale/s100k /tmp/ann/s100k
    python benchmarks/bench_partition.py --dir /tmp/ann/s100k --baseline /tmp/ann/main

``--synthetic N`` measures the partition alone where no store of that size exists yet: N
rows of the same corpus written straight into a vector cache in ``--dir`` (no Chroma, no
records), the partition built over it; then its search (without the metadata lookups a
real query adds) against an exact scan, and the duplicates' pair search over it.

    python benchmarks/bench_partition.py --synthetic 1000000 --dir /tmp/ann/syn1m
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_store_million
from _common import ROOT, cache_root, compile_sources, header, percentile
from bench_store_million import KEY, SLUG, queries

_PEAK = r"""
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
"""

_WARM = r"""
import json, sys, time
import numpy as np
from clipseek.store import Store, partition
qs = np.load(sys.argv[2])
db, key, slug = sys.argv[1], sys.argv[3], sys.argv[4]
approx = Store(db, reader=True, direct=True, approximate=True).open_index(key, slug)
exact = Store(db, reader=True, direct=True).open_index(key, slug)
t = time.perf_counter()
approx.query(qs[0], 10)
first = time.perf_counter() - t
exact.query(qs[0], 10)
out = {"first_s": first, "note": approx.partition_note}
truth, times_exact = [], []
for q in qs:
    t = time.perf_counter()
    truth.append([h.id for h in exact.query(q, 10)])
    times_exact.append(time.perf_counter() - t)
for nprobe in [int(x) for x in sys.argv[5].split(",")]:
    partition.NPROBE = nprobe
    times, recall, used = [], [], 0
    for q, want in zip(qs, truth):
        t = time.perf_counter()
        got = approx.query(q, 10)
        times.append(time.perf_counter() - t)
        used += approx.from_partition
        recall.append(len({h.id for h in got} & set(want)) / 10)
    out[str(nprobe)] = {"times": times, "recall": recall, "used": used}
out["exact_times"] = times_exact
print("RESULT " + json.dumps(out))
"""

_REST = r"""
import json, sys
import numpy as np
from clipseek.store import Store
qs = np.load(sys.argv[2])
store = Store(sys.argv[1], reader=True, direct=True, approximate=sys.argv[5] == "1")
index = store.open_index(sys.argv[3], sys.argv[4])
for q in qs:
    index.query(q, 10)
print("RESULT " + json.dumps({"rss_mb": status("VmRSS:"), "peak_mb": status("VmHWM:"),
    "from_partition": getattr(index, "from_partition", None)}))
"""

_DUPLICATES = r"""
import json, sys, time
start = time.perf_counter()
from clipseek.store import Store
from clipseek.search import duplicates
if sys.argv[5] == "1":
    duplicates.EXACT_LIMIT = 1000  # the large-library path, whatever the store's size
index = Store(sys.argv[1], reader=True, direct=True).open_index(sys.argv[3], sys.argv[4])
groups = duplicates.find_duplicates(index, 0.95)
rows = [sorted(int(i.path.rsplit("_", 1)[1].split(".")[0]) for i in g.items) for g in groups]
print("RESULT " + json.dumps({"s": time.perf_counter() - start, "groups": rows,
    "capped": getattr(duplicates.partition_pairs, "capped", None)
    if hasattr(duplicates, "partition_pairs") else None,
    "peak_mb": status("VmHWM:")}))
"""


def child(code: Path, script: str, *args: str) -> dict:
    return bench_store_million.child(code, script, *args, prelude=_PEAK)


def planted_found(groups: list[list[int]], n: int) -> int:
    """Planted pairs (500 m, 500 m + 1) that share a group."""
    together = 0
    for members in groups:
        inside = set(members)
        together += sum(1 for r in inside if r % 500 == 0 and r + 1 in inside and r + 1 < n)
    return together


def synthetic(folder: Path, n: int, centres: int, count: int, nprobes: str, skip: set[str]) -> dict:
    """The partition over ``n`` rows of bench_store_million's corpus in a bare cache."""
    import numpy as np
    from bench_store_million import CHUNK, vectors

    from clipseek.search import duplicates
    from clipseek.store import partition
    from clipseek.store import vector_cache as vc

    folder.mkdir(parents=True, exist_ok=True)
    figures: dict = {"n": n}
    if not vc.cache_folder(folder, "synthetic").exists():
        start = time.perf_counter()
        matrix = np.concatenate(
            [vectors(first, min(CHUNK, n - first), centres) for first in range(0, n, CHUNK)]
        )
        vc.write_cache(folder, "synthetic", "segment", 1, np.arange(n), matrix)
        del matrix
        print(f"cache written in {time.perf_counter() - start:.0f} s", flush=True)
    files = vc.cache_folder(folder, "synthetic")
    manifest = vc.read_manifest(files)
    view = vc.CacheView(files, manifest, np.arange(n), np.ones(n, dtype=bool), verified=True)
    try:
        part = partition.open_partition(view)  # built by an earlier run
    except partition.PartitionUnusable:
        start = time.perf_counter()
        partition.build_partition(view)
        figures["build_s"] = time.perf_counter() - start
        part = partition.open_partition(view)
    figures["lists"] = part.manifest.lists
    print(f"partition: {part.manifest.lists} lists, built in {figures.get('build_s')} s")
    if "queries" not in skip:
        figures.update(_synthetic_queries(view, part, n, centres, count, nprobes))
    if "duplicates" in skip:
        return figures
    lists = np.full(n, -1, dtype=np.int64)  # each row's list, as the direct reader gives it
    lists[part.positions] = np.repeat(np.arange(part.manifest.lists), np.diff(part.offsets))
    start = time.perf_counter()
    left, right = duplicates.partition_pairs(view.matrix(), part.centroids, 0.95, primary=lists)
    pairs_s = time.perf_counter() - start
    found = {(int(a), int(b)) for a, b in zip(left, right, strict=True)}
    planted = [(r, r + 1) for r in range(0, n - 1, 500)]
    figures["duplicates"] = {
        "pairs_s": pairs_s,
        "pairs": len(found),
        "planted_found": sum(p in found for p in planted),
        "planted": len(planted),
        "capped_rows": duplicates.partition_pairs.capped,  # type: ignore[attr-defined]
        "peak_mb": _peak_mb(),
    }
    d = figures["duplicates"]
    print(
        f"duplicates' pair search at 0.95: {pairs_s:.0f} s, {d['pairs']} pairs, planted "
        f"{d['planted_found']}/{d['planted']}, rows past the visit cap {d['capped_rows']}, "
        f"peak {d['peak_mb']:,.0f} MB",
        flush=True,
    )
    return figures


def _synthetic_queries(view, part, n: int, centres: int, count: int, nprobes: str) -> dict:
    """The partition's search against an exact scan, over the bare cache."""
    import numpy as np

    figures: dict = {}
    qs = queries(count, n, centres)
    # the exact answers: one pass over the rows for every query at once
    best = np.full((len(qs), 10), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(qs), 10), dtype=np.int64)
    for start_row, block in view._blocks(0):
        sims = qs @ np.asarray(block).T
        rows = np.broadcast_to(np.arange(start_row, start_row + len(block)), sims.shape)
        sims = np.concatenate([best, sims], axis=1)
        rows = np.concatenate([best_rows, rows], axis=1)
        top = np.argpartition(-sims, 9, axis=1)[:, :10]
        best = np.take_along_axis(sims, top, 1)
        best_rows = np.take_along_axis(rows, top, 1)
    times_exact = []
    for q in qs[:10]:  # what one exact scan of a query costs
        start = time.perf_counter()
        np.argpartition(-view.scores(q), 9)[:10]
        times_exact.append(time.perf_counter() - start)
    figures["exact_scan_p50_ms"] = percentile([t * 1000 for t in times_exact], 50)
    print(f"exact scan: p50 {figures['exact_scan_p50_ms']:.0f} ms (10 queries)", flush=True)
    for nprobe in [int(x) for x in nprobes.split(",")]:
        times, recall = [], []
        for q, want in zip(qs, best_rows, strict=True):
            start = time.perf_counter()
            found = part.search(view, q, 10, nprobe=nprobe)
            times.append(time.perf_counter() - start)
            assert found is not None
            recall.append(len(set(found[0].tolist()) & set(want.tolist())) / 10)
        ms = [t * 1000 for t in times]
        figures[f"nprobe_{nprobe}"] = row = {
            "p50_ms": percentile(ms, 50),
            "p95_ms": percentile(ms, 95),
            "recall_at_10": float(np.mean(recall)),
            "min_recall": float(np.min(recall)),
        }
        print(
            f"nprobe {nprobe:>3}: search p50 {row['p50_ms']:.2f} ms, p95 {row['p95_ms']:.2f} ms, "
            f"recall@10 {row['recall_at_10']:.4f} (lowest {row['min_recall']:.1f})",
            flush=True,
        )
    return figures


def _peak_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="a copy of a bench store")
    parser.add_argument("--synthetic", type=int, default=0, help="N rows in a bare cache")
    parser.add_argument("--baseline", type=Path, default=None, help="a checkout to compare")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--centres", type=int, default=5000)
    parser.add_argument("--nprobe", default="8,16,32,64")
    parser.add_argument("--skip", default="", help="comma list of: build,duplicates,queries")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    import numpy as np

    from clipseek.store import Store, partition
    from clipseek.store import vector_cache as vc
    from clipseek.store.cache_build import refresh_caches

    folder = args.dir
    if args.synthetic:
        header(f"The approximate index over {args.synthetic:,} rows of a bare vector cache")
        figures = synthetic(folder, args.synthetic, args.centres, args.queries, args.nprobe, skip)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1))
        return
    n = sum(i.count for i in Store(str(folder), reader=True).peek_indexes() or [])
    header(f"The approximate index over {n:,} vectors")
    figures: dict = {"n": n}
    if "build" not in skip:
        for collection_id in vc.cached_collections(folder):
            partition.drop_partition(folder, collection_id)
        start = time.perf_counter()
        refresh_caches(folder, partition_min=1)
        figures["build_s"] = time.perf_counter() - start
    sizes = {
        p.name.split(".", 1)[1]: p.stat().st_size for p in folder.glob("clipseek-vectors-*ivf*")
    }
    figures["files_mb"] = {k: v / 1e6 for k, v in sizes.items()}
    print(f"partition: {json.dumps(figures)}", flush=True)

    qfile = cache_root() / "partition-queries.npy"
    np.save(qfile, queries(args.queries, n, args.centres))
    compile_sources(ROOT)
    warm = child(ROOT, _WARM, str(folder), str(qfile), KEY, SLUG, args.nprobe)
    exact_ms = [t * 1000 for t in warm["exact_times"]]
    figures["exact_p50_ms"] = percentile(exact_ms, 50)
    figures["exact_p95_ms"] = percentile(exact_ms, 95)
    figures["first_approximate_s"] = warm["first_s"]
    print(f"exact scan: p50 {figures['exact_p50_ms']:.1f} ms, p95 {figures['exact_p95_ms']:.1f} ms")
    for nprobe in args.nprobe.split(","):
        got = warm[nprobe]
        ms = [t * 1000 for t in got["times"]]
        row = {
            "p50_ms": percentile(ms, 50),
            "p95_ms": percentile(ms, 95),
            "recall_at_10": float(np.mean(got["recall"])),
            "min_recall": float(np.min(got["recall"])),
            "answered_from_partition": got["used"],
        }
        figures[f"nprobe_{nprobe}"] = row
        ratio = figures["exact_p50_ms"] / row["p50_ms"]
        print(
            f"nprobe {nprobe:>3}: p50 {row['p50_ms']:.2f} ms ({ratio:.1f}x faster), p95 "
            f"{row['p95_ms']:.2f} ms, recall@10 {row['recall_at_10']:.4f} "
            f"(lowest {row['min_recall']:.1f}), {row['answered_from_partition']}/{len(ms)} "
            "from the partition",
            flush=True,
        )
    for label, flag in (("approximate", "1"), ("exact", "0")):
        rest = child(ROOT, _REST, str(folder), str(qfile), KEY, SLUG, flag)
        figures[f"rest_{label}"] = rest
        print(
            f"reader at rest after {args.queries} searches ({label}): RSS {rest['rss_mb']:.0f} MB,"
            f" peak {rest['peak_mb']:.0f} MB",
            flush=True,
        )

    if "duplicates" not in skip:
        codes = [("this", ROOT, "1")]
        if args.baseline:
            compile_sources(args.baseline)
            codes.append(("baseline", args.baseline, "0"))
        for label, code, force in codes:
            res = child(code, _DUPLICATES, str(folder), str(qfile), KEY, SLUG, force)
            found = planted_found(res["groups"], n)
            figures[f"duplicates_{label}"] = {
                "s": res["s"],
                "groups": len(res["groups"]),
                "largest": max((len(g) for g in res["groups"]), default=0),
                "planted_found": found,
                "planted": len(range(0, n - 1, 500)),
                "capped_rows": res["capped"],
                "peak_mb": res["peak_mb"],
            }
            d = figures[f"duplicates_{label}"]
            print(
                f"duplicates ({label}): {d['s']:.1f} s, {d['groups']} groups (largest "
                f"{d['largest']}), planted copies found {found}/{d['planted']}, peak "
                f"{d['peak_mb']:.0f} MB, rows past the visit cap {d['capped_rows']}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
