"""Chroma's HNSW with clipseek's settings against Chroma's defaults, through clipseek's writer
(issue 24: "measure what Chroma can take on this machine with clipseek's HNSW settings and
with Chroma's defaults, report recall@10 of both, and choose").

For each setting, one store of ``--n`` synthetic 512-d vectors (``bench_store_million``'s
clustered corpus and records) is written through ``ImageIndex.upsert`` in 5,000-record calls,
as an index run writes; then a fresh process reads it as a Chroma reader does (a snapshot,
Chroma's HNSW): the cold first query, warm p50/p95 over ``--queries`` queries and recall@10
against an exact scan. The two run one after the other: compare them under the same load.

- ``clipseek``: ``HNSW_CONFIG`` (cosine, ef_construction 200, max_neighbors 32, ef_search 200);
- ``chroma-defaults``: cosine (clipseek needs it), everything else Chroma's own default
  (ef_construction 100, max_neighbors 16, ef_search 100 in chromadb 1.x).

    nice -n 10 python benchmarks/bench_hnsw_settings.py --n 100000 --dir /tmp/hnsw-settings
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, cache_root, compile_sources, header, percentile
from bench_store_million import (
    _SERVE,
    CHUNK,
    DIM,
    KEY,
    SLUG,
    _number,
    child,
    exact_top,
    queries,
    record,
)
from bench_store_million import vectors as corpus

SETTINGS = {
    "clipseek": None,  # HNSW_CONFIG as it is
    "chroma-defaults": {"space": "cosine"},
}


def build(folder: Path, n: int, centres: int, config: dict | None) -> dict:
    """Write ``n`` records through clipseek's writer with ``config`` as the HNSW settings."""
    from clipseek.store import Store, chroma

    shutil.rmtree(folder, ignore_errors=True)
    saved = chroma.HNSW_CONFIG
    if config is not None:
        chroma.HNSW_CONFIG = config  # what create_index passes to Chroma
    try:
        store = Store(str(folder))
        index = store.create_index(KEY, "bench", SLUG, DIM)
    finally:
        chroma.HNSW_CONFIG = saved
    start = time.perf_counter()
    for first in range(0, n, CHUNK):
        block = corpus(first, min(CHUNK, n - first), centres)
        index.upsert([record(first + j, v) for j, v in enumerate(block)])
    insert_s = time.perf_counter() - start
    store.close()
    disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
    return {"insert_s": insert_s, "insert_per_s": n / insert_s, "disk_mb": disk}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--centres", type=int, default=5000)
    parser.add_argument("--dir", type=Path, default=None, help="where the stores go (kept)")
    parser.add_argument("--reuse", action="store_true", help="measure the stores in --dir")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--only", choices=sorted(SETTINGS), default=None, help="build and read one setting"
    )
    args = parser.parse_args()
    settings = {args.only: SETTINGS[args.only]} if args.only else SETTINGS
    header(f"Chroma's HNSW at {args.n:,} vectors: clipseek's settings against Chroma's defaults")
    import numpy as np

    base = args.dir or cache_root() / f"hnsw-settings-{args.n}"
    base.mkdir(parents=True, exist_ok=True)
    compile_sources(ROOT)
    qs = queries(args.queries, args.n, args.centres)
    qfile = cache_root() / "hnsw-settings-queries.npy"
    np.save(qfile, qs)
    truth = exact_top(qs, args.n, args.centres)
    figures: dict = {"n": args.n}
    for name, config in settings.items():
        folder = base / name
        got = {} if args.reuse else build(folder, args.n, args.centres, config)
        if got:
            print(f"  {name}: insert {got['insert_per_s']:,.0f}/s ({got['insert_s']:.0f} s)")
        res = child(ROOT, _SERVE, str(folder), str(qfile), KEY, SLUG)
        found = [[_number(p) for p in f] for f in res["found"]]
        ms = [t * 1000 for t in res["times"]]
        got.update(
            {
                "hnsw": res["hnsw"],
                "cold_first_query_s": res["cold_s"],
                "warm_p50_ms": percentile(ms, 50),
                "warm_p95_ms": percentile(ms, 95),
                "recall_at_10": float(
                    np.mean([len(set(f) & t) / 10 for f, t in zip(found, truth, strict=True)])
                ),
                "reader_rss_mb": res["rss_mb"],
            }
        )
        figures[name] = got
        print(f"  {name}: {json.dumps(got)}", flush=True)
    print(f"\nn = {args.n:,}")
    for name in settings:
        f = figures[name]
        rate = f"insert {f['insert_per_s']:,.0f}/s, " if "insert_per_s" in f else ""
        print(
            f"  {name:>15}: {rate}recall@10 {f['recall_at_10']:.4f}, cold first "
            f"{f['cold_first_query_s']:.2f} s, warm p50 {f['warm_p50_ms']:.1f} ms / p95 "
            f"{f['warm_p95_ms']:.1f} ms, reader {f['reader_rss_mb']:,.0f} MB, HNSW {f['hnsw']}"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
