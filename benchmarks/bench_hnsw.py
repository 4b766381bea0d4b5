"""HNSW recall: ChromaDB's top-k against an exact scan, to choose clipseek's HNSW parameters.

Builds a persistent collection of N unit vectors (dim 512) per (max_neighbors,
ef_construction) pair, then for each ef_search measures recall@10 (the share of the
exact top 10 that Chroma returns) and the median query latency. Chroma fixes
ef_search when a process first loads the index, so each ef_search value is measured
in a fresh process; max_neighbors and ef_construction are fixed at creation.

Two kinds of vectors:
  clip-like  what CLIP image embeddings look like: a shared mean direction (they fill a
             narrow cone), a power-law spectrum (a few directions carry most of the
             variance) and clusters (photos of the same kind of scene); queries come
             from another cone, as text embeddings do ("modality gap").
  uniform    random directions: the hardest case for any graph index, shown for
             reference only; real embeddings are never like this.

    python benchmarks/bench_hnsw.py --quick     # 20k vectors
    python benchmarks/bench_hnsw.py             # 100k vectors (builds are cached)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cache_root, header, median

DIM = 512


def vectors_for(kind: str, n: int, queries: int, seed: int = 0) -> tuple[Any, Any]:
    """(data, queries), unit float32 rows, reproducible from ``seed``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if kind == "uniform":
        data = rng.normal(size=(n, DIM)).astype(np.float32)
        query = rng.normal(size=(queries, DIM)).astype(np.float32)
    else:
        scale = (np.arange(1, DIM + 1, dtype=np.float32) ** -0.5)[None, :]
        clusters = max(50, n // 100)
        centres = rng.normal(size=(clusters, DIM)).astype(np.float32) * scale
        mean = np.zeros(DIM, dtype=np.float32)
        mean[0] = 3.2  # the cone: pairwise cosine around 0.5, as for CLIP images
        labels = rng.integers(0, clusters, n)
        data = mean + centres[labels] + 0.7 * rng.normal(size=(n, DIM)).astype(np.float32) * scale
        text_mean = np.zeros(DIM, dtype=np.float32)
        text_mean[1] = 4.5
        picks = centres[rng.integers(0, clusters, queries)]
        noise = rng.normal(size=(queries, DIM)).astype(np.float32) * scale
        query = text_mean + 0.6 * mean + 0.5 * picks + 0.7 * noise
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    return data, query


def db_folder(kind: str, n: int, max_neighbors: int, ef_construction: int) -> Path:
    return cache_root() / f"hnsw-{kind}-{n}-M{max_neighbors}-efc{ef_construction}"


def build(kind: str, n: int, queries: int, max_neighbors: int, ef_construction: int) -> float:
    """Build (or reuse) the collection; returns build seconds (0 when cached)."""
    import chromadb
    from chromadb.config import Settings

    folder = db_folder(kind, n, max_neighbors, ef_construction)
    if (folder / "done").exists():
        return float((folder / "done").read_text())
    data, _ = vectors_for(kind, n, queries)
    client = chromadb.PersistentClient(
        path=str(folder), settings=Settings(anonymized_telemetry=False)
    )
    with contextlib.suppress(Exception):  # a half-built collection from an interrupted run
        client.delete_collection("bench")
    col = client.create_collection(
        "bench",
        configuration={
            "hnsw": {
                "space": "cosine",
                "max_neighbors": max_neighbors,
                "ef_construction": ef_construction,
                "ef_search": 10,
            }
        },
        embedding_function=None,
    )
    step = client.get_max_batch_size()
    ids = [f"v{i}" for i in range(n)]
    start = time.perf_counter()
    for i in range(0, n, step):
        col.add(ids=ids[i : i + step], embeddings=data[i : i + step])
    col.count()
    seconds = time.perf_counter() - start
    (folder / "done").write_text(f"{seconds:.1f}")
    return seconds


def probe(
    kind: str, n: int, queries: int, max_neighbors: int, ef_construction: int, ef: int, k: int
) -> dict[str, float]:
    """In this (fresh) process: set ef_search, then measure recall@k and latency."""
    import chromadb
    import numpy as np
    from chromadb.config import Settings

    data, query = vectors_for(kind, n, queries)
    truth = np.argsort(-(query @ data.T), axis=1)[:, :k]
    folder = db_folder(kind, n, max_neighbors, ef_construction)
    client = chromadb.PersistentClient(
        path=str(folder), settings=Settings(anonymized_telemetry=False)
    )
    col = client.get_collection("bench")
    col.modify(configuration={"hnsw": {"ef_search": ef}})
    col.query(query_embeddings=query[:1], n_results=k, include=[])  # loads the index
    hits, times = 0, []
    for q, exact in zip(query, truth, strict=True):
        start = time.perf_counter()
        res = col.query(query_embeddings=q[None, :], n_results=k, include=[])
        times.append(time.perf_counter() - start)
        hits += len({int(i[1:]) for i in res["ids"][0]} & set(exact.tolist()))
    return {"recall": hits / (k * len(query)), "p50_ms": median(times) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, help="vectors (default 100000, quick 20000)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--graphs", default="16:100,32:200", help="max_neighbors:ef_construction,..."
    )
    parser.add_argument("--ef", default="10,50,100,200", help="ef_search values")
    parser.add_argument("--data", default="clip-like,uniform")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = args.n or (20_000 if args.quick else 100_000)
    if args.probe:
        kind, m, efc, ef = args.probe.split(":")
        result = probe(kind, n, args.queries, int(m), int(efc), int(ef), args.k)
        print(json.dumps(result))
        return

    header(f"HNSW recall@{args.k} vs exact scan, {n} vectors of dim {DIM}")
    graphs = [tuple(int(x) for x in g.split(":")) for g in args.graphs.split(",")]
    efs = [int(x) for x in args.ef.split(",")]
    print("| data | max_neighbors | ef_construction | build s | ef_search | recall@10 | p50 ms |")
    print("|---|---|---|---|---|---|---|")
    for kind in args.data.split(","):
        for m, efc in graphs:
            seconds = build(kind, n, args.queries, m, efc)
            for ef in efs:
                cmd = [
                    sys.executable,
                    __file__,
                    "--n",
                    str(n),
                    "--queries",
                    str(args.queries),
                    "--k",
                    str(args.k),
                    "--probe",
                    f"{kind}:{m}:{efc}:{ef}",
                ]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                result = json.loads(out.strip().splitlines()[-1])
                print(
                    f"| {kind} | {m} | {efc} | {seconds:.0f} | {ef} "
                    f"| {result['recall']:.4f} | {result['p50_ms']:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
