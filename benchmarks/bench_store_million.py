"""The store at a million images: insert rate, warm and cold queries, memory, disk, recall.

Synthetic 512-d unit vectors (clustered like photo embeddings: a few thousand centres
plus noise, which is harder for HNSW than it looks and easier than uniform noise) go in
through clipseek's own ``ImageIndex.upsert`` with realistic metadata (path, size, mtime,
dimensions, content hash, folder list), so the figures are clipseek's, not bare Chroma's.
Then, in a fresh process: the cold first query (opening the store and loading the HNSW
index), warm query p50/p95, peak RSS; recall@10 against an exact scan of every vector.

    python benchmarks/bench_store_million.py              # 1,000,000 vectors
    python benchmarks/bench_store_million.py --n 100000   # ~3 min on 2 cores

Goals (issue 11): warm p50 <= 50 ms, cold first query <= 3 s, recall@10 >= 0.99.
``--time-limit`` stops inserting after that many seconds and measures what is in.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cache_root, header, percentile

DIM = 512
CHUNK = 5000


def vectors(start: int, count: int, centres: int, seed: int = 0):
    """Rows ``start .. start+count`` of the synthetic corpus, the same on every call."""
    import numpy as np

    centre_rng = np.random.default_rng(seed)
    means = centre_rng.standard_normal((centres, DIM)).astype(np.float32)
    rng = np.random.default_rng(seed * 1_000_003 + start + 1)
    pick = rng.integers(0, centres, count)
    out = means[pick] + 0.6 * rng.standard_normal((count, DIM)).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
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


_QUERY_PROCESS = r"""
import json, resource, sys, time
import numpy as np
start = time.perf_counter()
from clipseek.store import Store
store = Store(sys.argv[1], create=False)
index = store.open_index("bench:million", "bench-million")
qs = np.load(sys.argv[2])
first = index.query(qs[0], 10)
cold = time.perf_counter() - start
times, found = [], []
for q in qs:
    t = time.perf_counter()
    hits = index.query(q, 10)
    times.append(time.perf_counter() - t)
    found.append([int(h.path.rsplit("_", 1)[1].split(".")[0]) for h in hits])
print("RESULT " + json.dumps({
    "cold_s": cold, "times": times, "found": found,
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--centres", type=int, default=5000)
    parser.add_argument("--time-limit", type=float, default=None, help="seconds of inserting")
    parser.add_argument("--dir", type=Path, default=None, help="where the store goes")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    header(f"Chroma store at {args.n:,} vectors ({DIM}-d), through clipseek's ImageIndex")
    import numpy as np

    from clipseek.store import Store
    from clipseek.store.chroma import HNSW_CONFIG

    folder = args.dir or cache_root() / f"store-{args.n}"
    shutil.rmtree(folder, ignore_errors=True)
    store = Store(str(folder))
    index = store.create_index("bench:million", "bench", "bench-million", DIM)
    print(f"HNSW settings: {json.dumps(HNSW_CONFIG)}; write chunk {index._max_batch()}", flush=True)
    start = time.perf_counter()
    inserted, checkpoint, at_checkpoint = 0, start, 0
    for first in range(0, args.n, CHUNK):
        block = vectors(first, min(CHUNK, args.n - first), args.centres)
        index.upsert([record(first + j, v) for j, v in enumerate(block)])
        inserted = first + len(block)
        if inserted % 100_000 == 0 or inserted == args.n:
            now = time.perf_counter()
            print(
                f"  {inserted:>9,} in {now - start:7.1f} s "
                f"(last stretch {(inserted - at_checkpoint) / max(now - checkpoint, 1e-9):,.0f}/s)",
                flush=True,
            )
            checkpoint, at_checkpoint = now, inserted
        if args.time_limit and time.perf_counter() - start > args.time_limit:
            print(f"  time limit: stopping at {inserted:,}", flush=True)
            break
    insert_s = time.perf_counter() - start
    writer_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    store.close()
    disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    n = inserted

    qs = queries(args.queries, n, args.centres)
    qfile = cache_root() / "million-queries.npy"
    np.save(qfile, qs)
    out = subprocess.run(
        [sys.executable, "-c", _QUERY_PROCESS, str(folder), str(qfile)],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=1800,
    )
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if not lines:
        raise SystemExit(out.stdout[-2000:] + out.stderr[-4000:])
    res = json.loads(lines[-1][7:])
    truth = exact_top(qs, n, args.centres)
    recall = float(
        np.mean([len(set(f) & t) / 10 for f, t in zip(res["found"], truth, strict=True)])
    )
    times_ms = [t * 1000 for t in res["times"]]
    figures = {
        "n": n,
        "insert_per_s": n / insert_s,
        "insert_s": insert_s,
        "cold_first_query_s": res["cold_s"],
        "warm_p50_ms": percentile(times_ms, 50),
        "warm_p95_ms": percentile(times_ms, 95),
        "recall_at_10": recall,
        "peak_rss_writer_mb": writer_rss,
        "peak_rss_reader_mb": res["rss_mb"],
        "disk_mb": disk / 1e6,
        "hnsw": HNSW_CONFIG,
    }
    print(
        f"n={n:,}: insert {figures['insert_per_s']:,.0f}/s ({insert_s:.0f} s); "
        f"cold first query {res['cold_s']:.2f} s (goal <= 3); "
        f"warm p50 {figures['warm_p50_ms']:.1f} ms / p95 {figures['warm_p95_ms']:.1f} ms "
        f"(goal p50 <= 50); recall@10 {recall:.3f} (goal >= 0.99); "
        f"peak RSS writer {writer_rss:,.0f} MB, reader {res['rss_mb']:,.0f} MB; "
        f"disk {disk / 1e6:,.0f} MB",
        flush=True,
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    if not args.dir:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
