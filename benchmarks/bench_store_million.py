"""The store at 10k, 100k, a million images: every read path a user takes, against a baseline.

Synthetic 512-d unit vectors (clustered like photo embeddings: a few thousand centres
plus noise, with a near-copy planted every 500 records) go in through clipseek's own
``ImageIndex.upsert`` with realistic metadata (path, size, mtime, dimensions, content
hash, folder list), so the figures are clipseek's, not bare Chroma's. Then the index's
vector cache is built as an index run ends (``refresh_caches``), and each read path runs
in fresh processes, for this checkout and for ``--baseline`` (another checkout's code
over the same index files, in the same run):

- cold query: a new process opens the index as ``clipseek query`` does (the direct
  reader) and answers one query, plain and filtered to one folder; with the index files
  in the page cache, and with them evicted (``posix_fadvise(DONTNEED)`` on the index's
  files only: dropping every cache would slow the other jobs on a shared machine). The
  text encoder is not included: it costs the same whatever the library's size;
- ``clipseek check`` (``repair.check`` as the command calls it: the self-search on
  ``CHECK_SAMPLE`` vectors where the checkout has one, on every vector otherwise),
  ``clipseek duplicates`` (``find_duplicates``
  through the engine's reader), ``clipseek info`` (``Store.peek_indexes``): time and peak
  RSS of each, one process each;
- with ``--serve``: Chroma's HNSW (what ``clipseek serve`` searches): cold first query,
  warm p50/p95 over 200 queries, recall@10 against an exact scan.

    python benchmarks/bench_store_million.py --n 10000 --baseline /tmp/base
    python benchmarks/bench_store_million.py --n 100000 --baseline /tmp/base --dir /tmp/s100k
    python benchmarks/bench_store_million.py --n 100000 --dir /tmp/s100k --reuse   # no insert

``--time-limit`` stops inserting after that many seconds and measures what is in.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, cache_root, compile_sources, header, percentile

DIM = 512
CHUNK = 5000
KEY, SLUG = "bench:million", "bench-million"


def vectors(start: int, count: int, centres: int, seed: int = 0):
    """Rows ``start .. start+count`` of the synthetic corpus, the same on every call; a
    row at 1 past a multiple of 500 is a near-copy (cosine ~0.99) of the row before."""
    import numpy as np

    centre_rng = np.random.default_rng(seed)
    means = centre_rng.standard_normal((centres, DIM)).astype(np.float32)
    rng = np.random.default_rng(seed * 1_000_003 + start + 1)
    pick = rng.integers(0, centres, count)
    out = means[pick] + 0.6 * rng.standard_normal((count, DIM)).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    for j in range(count):
        if (start + j) % 500 == 1 and j > 0:
            near = out[j - 1] + 0.004 * rng.standard_normal(DIM).astype(np.float32)
            out[j] = near / np.linalg.norm(near)
    return out


def record(i: int, vector):
    from clipseek.store import Record

    return Record(
        f"/photos/{2000 + i % 25}/event-{i // 500:05d}/IMG_{i:07d}.jpg",
        vector,
        2_000_000 + (i * 7919) % 3_000_000,
        1_600_000_000_000_000_000 + i * 1_000_000,
        4032,
        3024,
        extra={"content_hash": f"{i * 2654435761 % (1 << 64):016x}" * 4},
    )


def queries(count: int, n: int, centres: int):
    """Query vectors near stored ones (a photo's text or image query lands near a cluster)."""
    import numpy as np

    rng = np.random.default_rng(99)
    rows = rng.integers(0, n, count)
    out = []
    for row in rows:
        start = int(row) - int(row) % CHUNK  # the same chunks as inserted
        base = vectors(start, min(CHUNK, n - start), centres)[int(row) - start]
        noise = rng.standard_normal(DIM).astype(np.float32)
        q = base + 0.5 * noise / np.linalg.norm(noise)
        out.append(q / np.linalg.norm(q))
    return np.stack(out).astype(np.float32)


def exact_top(qs, n: int, centres: int, k: int = 10):
    """Exact cosine top-k of every query over all ``n`` vectors, chunk by chunk."""
    import numpy as np

    best_scores = np.full((len(qs), k), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(qs), k), dtype=np.int64)
    for start in range(0, n, CHUNK):
        block = vectors(start, min(CHUNK, n - start), centres)
        scores = qs @ block.T
        ids = np.arange(start, start + len(block))[None, :].repeat(len(qs), 0)
        scores = np.concatenate([best_scores, scores], axis=1)
        ids = np.concatenate([best_ids, ids], axis=1)
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        best_scores = np.take_along_axis(scores, top, 1)
        best_ids = np.take_along_axis(ids, top, 1)
    return [set(row.tolist()) for row in best_ids]


def approximate_serve(folder: Path, qfile: Path, qs, n: int, centres: int) -> dict:
    """``--approximate``: what the app and ``clipseek serve`` search (issue 24): the direct
    reader with ``approximate=True`` over the vector cache's partition (built first, as an
    index run ends, whatever the size): cold first query, warm p50/p95, recall@10 against
    an exact scan, memory at rest after the searches (VmRSS) and at peak. No text encoder."""
    import numpy as np

    from clipseek.store import Store
    from clipseek.store.cache_build import refresh_caches
    from clipseek.store.records import COLLECTION_PREFIX

    start = time.perf_counter()
    refresh_caches(folder, partition_min=1)
    built = time.perf_counter() - start
    (info,) = Store(str(folder), reader=True).peek_indexes() or []
    slug = info.collection.removeprefix(COLLECTION_PREFIX)
    script = r"""
import json, sys, time
import numpy as np
start = time.perf_counter()
from clipseek.store import Store
store = Store(sys.argv[1], reader=True, direct=True, approximate=True)
index = store.open_index(sys.argv[3], sys.argv[4])
qs = np.load(sys.argv[2])
index.query(qs[0], 10)
cold = time.perf_counter() - start
times, found, used = [], [], 0
for q in qs:
    t = time.perf_counter()
    hits = index.query(q, 10)
    times.append(time.perf_counter() - t)
    used += index.from_partition
    found.append([h.path for h in hits])
rest = [int(x.split()[1]) / 1024 for x in open("/proc/self/status") if x.startswith("VmRSS:")]
print("RESULT " + json.dumps({"cold_s": cold, "times": times, "found": found, "used": used,
    "rest_mb": rest[0], "rss_mb": peak_mb()}))
"""
    res = child(ROOT, script, str(folder), str(qfile), info.model_key, slug)
    truth = exact_top(qs, n, centres)
    found = [[_number(p) for p in f] for f in res["found"]]
    times_ms = [t * 1000 for t in res["times"]]
    out = {
        "partition_build_s": built,
        "cold_first_query_s": res["cold_s"],
        "warm_p50_ms": percentile(times_ms, 50),
        "warm_p95_ms": percentile(times_ms, 95),
        "recall_at_10": float(
            np.mean([len(set(f) & t) / 10 for f, t in zip(found, truth, strict=True)])
        ),
        "from_partition": res["used"],
        "rest_mb": res["rest_mb"],
        "rss_mb": res["rss_mb"],
    }
    print(
        f"  approximate (the app, serve): partition built in {built:.1f} s; cold first "
        f"{out['cold_first_query_s']:.2f} s, warm p50 {out['warm_p50_ms']:.1f} ms / p95 "
        f"{out['warm_p95_ms']:.1f} ms, recall@10 {out['recall_at_10']:.3f} ({res['used']}/"
        f"{len(qs)} from the partition), {out['rest_mb']:,.0f} MB at rest, peak "
        f"{out['rss_mb']:,.0f} MB",
        flush=True,
    )
    return out


def _number(path: str) -> int:
    return int(path.rsplit("_", 1)[1].split(".")[0])


# Each child prints one line: RESULT {json}. ``rss_mb`` is the child's own peak (VmHWM:
# ru_maxrss would count the parent's memory at the fork, before the child's exec).
_PEAK = r"""
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

_COLD = r"""
import json, resource, sys, time
start = time.perf_counter()
import numpy as np
from clipseek.store import Store
store = Store(sys.argv[1], reader=True, direct=True)
index = store.open_index(sys.argv[3], sys.argv[4])
q = np.load(sys.argv[2])[int(sys.argv[5])]
hits = index.query(q, 10)
cold = time.perf_counter() - start
t = time.perf_counter()
inside = index.query(q, 10, under="/photos/2003")
filtered = time.perf_counter() - t
print("RESULT " + json.dumps({
    "s": cold, "filtered_s": filtered,
    "paths": [h.path for h in hits], "inside": [h.path for h in inside],
    "from_cache": getattr(index, "from_cache", None),
    "rss_mb": peak_mb(),
}))
"""

_CHECK = r"""
import json, resource, sys, time
start = time.perf_counter()
from clipseek.store import Store
from clipseek.store import repair
# What `clipseek check` does in each checkout: a sample where there is one, else everything.
sample = getattr(repair, "CHECK_SAMPLE", None)
report = repair.check(Store(sys.argv[1], create=False), sample=sample)
print("RESULT " + json.dumps({
    "s": time.perf_counter() - start, "healthy": report.healthy, "problems": report.problems,
    "found_self": report.found_self, "records": report.records, "sample": sample,
    "rss_mb": peak_mb(),
}))
"""

_DUPLICATES = r"""
import json, resource, sys, time
start = time.perf_counter()
from clipseek.store import Store
from clipseek.search.duplicates import find_duplicates
index = Store(sys.argv[1], reader=True, direct=True).open_index(sys.argv[3], sys.argv[4])
groups = find_duplicates(index, 0.95)
print("RESULT " + json.dumps({
    "s": time.perf_counter() - start, "groups": len(groups),
    "largest": max((len(g.items) for g in groups), default=0),
    "from_cache": getattr(index, "from_cache", None),
    "rss_mb": peak_mb(),
}))
"""

_INFO = r"""
import json, resource, sys, time
start = time.perf_counter()
from clipseek.store import Store
infos = Store(sys.argv[1], reader=True).peek_indexes()
print("RESULT " + json.dumps({
    "s": time.perf_counter() - start, "count": sum(i.count for i in infos or []),
    "rss_mb": peak_mb(),
}))
"""

_SERVE = r"""
import json, resource, sys, time
import numpy as np
start = time.perf_counter()
from clipseek.store import Store
store = Store(sys.argv[1], reader=True)
index = store.open_index(sys.argv[3], sys.argv[4])
qs = np.load(sys.argv[2])
first = index.query(qs[0], 10)
cold = time.perf_counter() - start
times, found = [], []
for q in qs:
    t = time.perf_counter()
    hits = index.query(q, 10)
    times.append(time.perf_counter() - t)
    found.append([h.path for h in hits])
print("RESULT " + json.dumps({
    "cold_s": cold, "times": times, "found": found,
    "rss_mb": peak_mb(),
}))
"""


def child(code: Path, script: str, *args: str, timeout: float = 3600) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "ANONYMIZED_TELEMETRY": "False"}
    out = subprocess.run(
        [sys.executable, "-c", _PEAK + script, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=str(code),
    )
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"child failed in {code}:\n{out.stdout[-2000:]}{out.stderr[-4000:]}")
    return json.loads(lines[-1][7:])


def evict(folder: Path) -> None:
    """Drop the index's files from the page cache (only those: the machine is shared)."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def build(folder: Path, n: int, centres: int, time_limit: float | None) -> dict:
    from clipseek.store import Store, find_damage
    from clipseek.store.cache_build import refresh_caches
    from clipseek.store.chroma import HNSW_CONFIG

    shutil.rmtree(folder, ignore_errors=True)
    store = Store(str(folder))
    index = store.create_index(KEY, "bench", SLUG, DIM)
    print(f"HNSW settings: {json.dumps(HNSW_CONFIG)}; write chunk {index._max_batch()}", flush=True)
    start = time.perf_counter()
    inserted, checkpoint, at_checkpoint = 0, start, 0
    for first in range(0, n, CHUNK):
        block = vectors(first, min(CHUNK, n - first), centres)
        index.upsert([record(first + j, v) for j, v in enumerate(block)])
        inserted = first + len(block)
        if inserted % 100_000 == 0 or inserted == n:
            now = time.perf_counter()
            rate = (inserted - at_checkpoint) / max(now - checkpoint, 1e-9)
            print(f"  {inserted:>9,} in {now - start:7.1f} s (last {rate:,.0f}/s)", flush=True)
            checkpoint, at_checkpoint = now, inserted
        if time_limit and time.perf_counter() - start > time_limit:
            print(f"  time limit: stopping at {inserted:,}", flush=True)
            break
    insert_s = time.perf_counter() - start
    store.close()
    t = time.perf_counter()
    refresh_caches(folder)  # what the end of an index run does
    cache_s = time.perf_counter() - t
    find_damage(folder, notes="keep")  # so does this: readers skip the links it checked
    return {
        "n": inserted,
        "insert_s": insert_s,
        "insert_per_s": inserted / insert_s,
        "cache_build_s": cache_s,
        "peak_rss_writer_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def cold_queries(codes: list[tuple[str, Path]], folder: Path, qfile: Path, repeat: int) -> dict:
    """Cold queries of every checkout, taking turns (this, baseline, this, ...), so a
    change in the machine's load falls on both alike."""
    db = str(folder)
    runs: dict[str, dict[str, list]] = {label: {"warm": [], "dropped": []} for label, _ in codes}
    for i in range(repeat):
        for label, code in codes:
            child(code, _COLD, db, str(qfile), KEY, SLUG, str(i))  # files into the page cache
            runs[label]["warm"].append(child(code, _COLD, db, str(qfile), KEY, SLUG, str(i)))
            evict(folder)
            runs[label]["dropped"].append(child(code, _COLD, db, str(qfile), KEY, SLUG, str(i)))
    out = {}
    for label, got in runs.items():
        warm, dropped = got["warm"], got["dropped"]
        out[label] = {
            "cold_query_s": [r["s"] for r in warm],
            "cold_query_dropped_s": [r["s"] for r in dropped],
            "filtered_s": [r["filtered_s"] for r in warm],
            "cold_query_rss_mb": max(r["rss_mb"] for r in warm + dropped),
            "from_cache": warm[0]["from_cache"],
            "answers": [r["paths"] for r in warm],
            "inside": [r["inside"] for r in warm],
        }
    return out


def measure(code: Path, folder: Path, qfile: Path, skip: set[str]) -> dict:
    """``clipseek info``, ``check`` and ``duplicates`` of one checkout's code."""
    out: dict = {}
    db = str(folder)
    for name, script, wanted in (
        ("info", _INFO, True),
        ("check", _CHECK, "check" not in skip),
        ("duplicates", _DUPLICATES, "duplicates" not in skip),
    ):
        if not wanted:
            continue
        t = time.perf_counter()
        res = child(code, script, db, str(qfile), KEY, SLUG)
        res["wall_s"] = time.perf_counter() - t
        out[name] = res
        print(f"    {name}: {res['s']:.2f} s, {res['rss_mb']:,.0f} MB", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--centres", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3, help="cold queries of each kind")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds of inserting")
    parser.add_argument("--dir", type=Path, default=None, help="where the store goes (kept)")
    parser.add_argument("--reuse", action="store_true", help="measure the store in --dir as is")
    parser.add_argument("--baseline", type=Path, default=None, help="a checkout to compare")
    parser.add_argument("--skip", default="", help="comma list of: check,duplicates")
    parser.add_argument("--baseline-skip", default="", help="the same, for the baseline only")
    parser.add_argument("--approximate", action="store_true", help="also the partition's search")
    parser.add_argument("--serve", action="store_true", help="also Chroma's HNSW and recall")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.skip = set(filter(None, args.skip.split(",")))
    baseline_skip = args.skip | set(filter(None, args.baseline_skip.split(",")))
    header(f"The store at {args.n:,} vectors ({DIM}-d), through clipseek's ImageIndex")
    import numpy as np

    folder = args.dir or cache_root() / f"store-{args.n}"
    figures: dict = {}
    if args.reuse:
        from clipseek.store import Store, find_damage

        infos = Store(str(folder), reader=True).peek_indexes() or []
        figures["n"] = sum(i.count for i in infos)
        find_damage(folder, notes="keep")
    else:
        figures.update(build(folder, args.n, args.centres, args.time_limit))
        print(
            f"insert {figures['insert_per_s']:,.0f}/s ({figures['insert_s']:.0f} s); "
            f"vector cache built in {figures['cache_build_s']:.1f} s",
            flush=True,
        )
    n = figures["n"]
    figures["disk_mb"] = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
    qs = queries(max(args.queries, args.repeat), n, args.centres)
    qfile = cache_root() / "million-queries.npy"
    np.save(qfile, qs)

    codes = [("this", ROOT)] + ([("baseline", args.baseline)] if args.baseline else [])
    for _, code in codes:
        compile_sources(code)
    figures.update(cold_queries(codes, folder, qfile, args.repeat))
    for label, code in codes:
        print(f"  {label} ({code}):", flush=True)
        skip = baseline_skip if label == "baseline" else args.skip
        figures[label].update(measure(code, folder, qfile, skip))
    truth = exact_top(qs[: args.repeat], n, args.centres)
    for label, _ in codes:
        got = figures[label].pop("answers")
        pairs = zip(got, truth, strict=False)
        figures[label]["recall_at_10"] = float(
            np.mean([len({_number(p) for p in a} & t) / 10 for a, t in pairs])
        )
        inside = figures[label].pop("inside")
        figures[label]["filtered_all_inside"] = all(
            p.startswith("/photos/2003/") for answer in inside for p in answer
        )

    if args.serve:
        res = child(ROOT, _SERVE, str(folder), str(qfile), KEY, SLUG)
        truth = exact_top(qs, n, args.centres)
        found = [[_number(p) for p in f] for f in res["found"]]
        times_ms = [t * 1000 for t in res["times"]]
        figures["serve"] = {
            "cold_first_query_s": res["cold_s"],
            "warm_p50_ms": percentile(times_ms, 50),
            "warm_p95_ms": percentile(times_ms, 95),
            "recall_at_10": float(
                np.mean([len(set(f) & t) / 10 for f, t in zip(found, truth, strict=True)])
            ),
            "rss_mb": res["rss_mb"],
        }

    print(f"\nn = {n:,}; disk {figures['disk_mb']:,.0f} MB")
    for label, _ in codes:
        f = figures[label]
        line = (
            f"  {label:>8}: cold query {statistics.median(f['cold_query_s']):.2f} s "
            f"(runs {', '.join(f'{x:.2f}' for x in f['cold_query_s'])}), files evicted "
            f"{statistics.median(f['cold_query_dropped_s']):.2f} s, filtered +"
            f"{statistics.median(f['filtered_s']) * 1000:.0f} ms, peak RSS "
            f"{f['cold_query_rss_mb']:,.0f} MB, recall@10 {f['recall_at_10']:.3f}, "
            f"cache {f['from_cache']}"
        )
        for name in ("info", "check", "duplicates"):
            if name in f:
                line += f"; {name} {f[name]['s']:.1f} s / {f[name]['rss_mb']:,.0f} MB"
        print(line)
    if "serve" in figures:
        s = figures["serve"]
        print(
            f"  serve (HNSW): cold first {s['cold_first_query_s']:.2f} s, warm p50 "
            f"{s['warm_p50_ms']:.1f} ms / p95 {s['warm_p95_ms']:.1f} ms, recall@10 "
            f"{s['recall_at_10']:.3f}, {s['rss_mb']:,.0f} MB"
        )
    if args.approximate:
        figures["approximate"] = approximate_serve(folder, qfile, qs, n, args.centres)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    if not args.dir:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
