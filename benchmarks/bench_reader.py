"""What a reader pays to follow writers: the snapshot, the change check, the first query.

A store is filled with random 512-dimensional vectors and clipseek-like metadata, then
the reader's costs are timed (docs/RELIABILITY.md, "One index, many processes"):
taking a snapshot (copying ``chroma.sqlite3``, linking or copying the vector folder),
the fingerprint a reader compares before it reads, opening a reader and its first
query, a warm query, and the exact scan that completes a short HNSW answer.

    python benchmarks/bench_reader.py --count 5000
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()

    import numpy as np

    from clipseek.store import Record, Store
    from clipseek.store.snapshot import fingerprint, remove_snapshot, take_snapshot

    db = Path(tempfile.mkdtemp(prefix="clipseek-bench-reader-")) / "db"
    try:
        index = Store(db).create_index("k", "k", "slug", args.dim)
        rng = np.random.default_rng(0)
        started = time.perf_counter()
        for start in range(0, args.count, 500):
            # clipseek stores unit vectors: any other stored vector is damage.
            unit = rng.normal(size=(min(args.count, start + 500) - start, args.dim))
            unit = (unit / np.linalg.norm(unit, axis=1, keepdims=True)).astype(np.float32)
            index.upsert(
                [
                    Record(
                        path=f"/home/me/Pictures/{i // 200:03d}/IMG_{i:06d}.jpg",
                        embedding=unit[i - start],
                        size=1000 + i,
                        mtime_ns=i,
                        width=4000,
                        height=3000,
                    )
                    for i in range(start, min(args.count, start + 500))
                ]
            )
        took = time.perf_counter() - started
        print(f"{args.count} vectors of {args.dim} written in {took:.1f} s")
        sizes = {p.name: p.stat().st_size for p in db.rglob("*") if p.is_file()}
        hnsw = sum(v for k, v in sizes.items() if k.endswith(".bin"))
        sqlite_mb = sizes["chroma.sqlite3"] / 2**20
        print(f"chroma.sqlite3 {sqlite_mb:.1f} MB, HNSW {hnsw / 2**20:.1f} MB")
        for _ in range(3):
            started = time.perf_counter()
            snapshot = take_snapshot(db)
            took = time.perf_counter() - started
            linked = any(p.is_symlink() for p in snapshot.iterdir())
            print(f"snapshot {took * 1000:.0f} ms ({'linked' if linked else 'copied'} vectors)")
            remove_snapshot(snapshot)
        started = time.perf_counter()
        for _ in range(100):
            fingerprint(db)
        print(f"fingerprint {(time.perf_counter() - started) * 10:.2f} ms")
        reader = Store(db, reader=True)
        query = np.ones(args.dim, np.float32)
        started = time.perf_counter()
        opened = reader.open_index("k", "slug")
        assert opened is not None
        opened.query(query, 10)
        print(f"reader open + first query {(time.perf_counter() - started) * 1000:.0f} ms")
        started = time.perf_counter()
        opened.query(query, 10)
        print(f"warm query {(time.perf_counter() - started) * 1000:.1f} ms")
        started = time.perf_counter()
        opened._exact(query, 10, None)
        print(f"exact scan {(time.perf_counter() - started) * 1000:.0f} ms")
        reader.close()
    finally:
        shutil.rmtree(db.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
