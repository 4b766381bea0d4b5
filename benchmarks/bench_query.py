"""Benchmark 2: warm text-query latency at 10k and 100k stored vectors.

A clipseek index is filled with synthetic CLIP-like vectors (see bench_hnsw.py) whose
paths are real, empty files (search drops results whose file is gone). With the
ViT-B/32 stand-in loaded, ``Engine.search(text, top_k=10)`` is timed for a set of
queries: tokenising, encoding the text, the HNSW search in ChromaDB and the checks
on the hits, as the TUI pays for each keystroke-triggered query.

Baseline in the same run: the plain way, fp32 ``encode_text`` over the full 77-token
context and an exact numpy scan of all vectors.

    python benchmarks/bench_query.py --quick     # 10k only
    python benchmarks/bench_query.py             # 10k and 100k (index builds are cached)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cache_root, header, median, percentile, use_standin_cache

QUERIES = [
    "a dog playing in the park",
    "sunset over the sea",
    "a red car",
    "two children building a sandcastle on the beach",
    "snowy mountains",
    "a birthday cake with candles",
    "people dancing at a wedding",
    "a cat sleeping on a sofa",
    "the Eiffel tower at night",
    "a plate of spaghetti",
    "an old black and white photograph of a street",
    "fireworks",
]


def build_index(n: int) -> Path:
    """A clipseek index of ``n`` vectors (cached by size and HNSW parameters)."""
    from bench_hnsw import vectors_for

    from clipseek.models import resolve_model
    from clipseek.store import HNSW_CONFIG, Record, Store

    tag = "-".join(f"{k}{v}" for k, v in sorted(HNSW_CONFIG.items()) if k != "space")
    db = cache_root() / f"query-db-{n}-{tag}"
    files = cache_root() / f"query-files-{n}"
    if (db / "done").exists():
        return db
    spec = resolve_model("ViT-B/32")
    data, _ = vectors_for("clip-like", n, 1, seed=3)
    store = Store(db)
    index = store.create_index(spec.key, spec.name, spec.collection_slug, data.shape[1])
    step = 2000
    start = time.perf_counter()
    for i in range(0, n, step):
        records = []
        for j in range(i, min(n, i + step)):
            path = files / f"d{j // 1000:03d}" / f"img{j:06d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            records.append(Record(str(path), data[j], 0, 0, 640, 480))
        index.upsert(records)
        print(f"  building {n}: {i + len(records)}/{n}", end="\r", flush=True)
    index.add_roots([str(files)])
    print(f"  built {n} vectors in {time.perf_counter() - start:.0f} s" + " " * 20)
    (db / "done").write_text("ok")
    return db


def clipseek_latencies(db: Path, model: Any, rounds: int) -> list[float]:
    from clipseek.config import load_settings
    from clipseek.engine import Engine

    settings = load_settings({"model": "ViT-B/32", "db": db, "device": "cpu"})
    engine = Engine(settings, model_loader=lambda *_args: model)
    for text in QUERIES[:3]:  # warm: index loaded, model loaded
        engine.search(text, 10)
    times = []
    for _ in range(rounds):
        for text in QUERIES:
            start = time.perf_counter()
            response = engine.search(text, 10)
            times.append(time.perf_counter() - start)
            assert len(response.results) == 10, response
    return times


def baseline_latencies(db: Path, fp32: Any, rounds: int) -> list[float]:
    """fp32 full-context text encoding + exact numpy scan over every stored vector."""
    import numpy as np
    import torch

    from clipseek.models import resolve_model
    from clipseek.store import Store

    spec = resolve_model("ViT-B/32")
    index = Store(db).open_index(spec.key, spec.collection_slug)
    page = index._col.get(include=["embeddings"], limit=10**7)
    matrix = np.asarray(page["embeddings"], dtype=np.float32)
    times = []
    for _ in range(rounds):
        for text in QUERIES:
            start = time.perf_counter()
            tokens = fp32._tokenizer([text])
            with torch.inference_mode():
                vector = torch.nn.functional.normalize(fp32._model.encode_text(tokens), dim=-1)
            scores = matrix @ vector[0].numpy()
            top = np.argpartition(-scores, 10)[:10]
            top[np.argsort(-scores[top])]
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k vectors only")
    parser.add_argument("--sizes", help="comma-separated vector counts (default 10000,100000)")
    parser.add_argument("--rounds", type=int, default=5, help="passes over the 12 queries")
    args = parser.parse_args()
    sizes = [int(x) for x in (args.sizes or ("10000" if args.quick else "10000,100000")).split(",")]
    header("warm text-query latency, text encoding included")
    use_standin_cache()
    from clipseek.models import load_model, resolve_model

    spec = resolve_model("ViT-B/32")
    model = load_model(spec, device="cpu", precision="auto")
    fp32 = load_model(spec, device="cpu", precision="fp32")
    print(f"# clipseek precision: {model.precision}")
    rows = []
    for n in sizes:
        db = build_index(n)
        base = baseline_latencies(db, fp32, args.rounds)
        ours = clipseek_latencies(db, model, args.rounds)
        rows.append((n, ours, base))
    print()
    print("| vectors | clipseek p50 ms | p95 ms | baseline p50 ms | p95 ms | p50 ratio |")
    print("|---|---|---|---|---|---|")
    for n, ours, base in rows:
        p50, b50 = median(ours) * 1000, median(base) * 1000
        print(
            f"| {n:,} | {p50:.1f} | {percentile(ours, 95) * 1000:.1f} | {b50:.1f} "
            f"| {percentile(base, 95) * 1000:.1f} | {p50 / b50:.2f} |"
        )
    print("\nBaseline: fp32 full 77-token text encoding + exact numpy scan.")
    print("Target: p50 ≤ 30 ms at 100k.")


if __name__ == "__main__":
    main()
