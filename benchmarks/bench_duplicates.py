"""Near-duplicate search at library scale: `clipseek duplicates` over N stored vectors.

Builds a clipseek index of N synthetic vectors in a cone (pairwise cosine about 0.5, as
CLIP image embeddings are, and no two closer than about 0.7 by chance) with planted groups
of near-copies (cosine about 0.98 to their original, as resized or re-encoded photos
are), then times the neighbour-search grouping
and checks it against the truth: recall of planted pairs, and pairs reported that were not
planted. The baseline in the same run is an exact all-pairs scan (numpy, blocked) on a
sample, extrapolated quadratically to N, which is what an all-pairs tool would cost.

    python benchmarks/bench_duplicates.py --n 100000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header

DIM = 512


def cone(n: int, seed: int = 0):
    """Unit vectors around a shared direction: pairwise cosine about 0.5."""
    import numpy as np

    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n, DIM)).astype(np.float32)
    data[:, 0] += np.sqrt(DIM)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    return data


def planted(data, groups: int, size: int, seed: int = 1):
    """Replace ``groups × size`` rows with near-copies of ``groups`` originals."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = rng.choice(len(data), groups * size, replace=False).reshape(groups, size)
    for members in rows:
        base = data[members[0]]
        for row in members[1:]:
            noisy = base + rng.normal(scale=0.007, size=DIM).astype(np.float32)
            data[row] = noisy / np.linalg.norm(noisy)
    return [set(int(r) for r in members) for members in rows]


def exact_pairs_seconds(data, threshold: float, sample: int) -> float:
    """Seconds for an exact all-pairs scan of ``sample`` rows (blocked matrix products)."""
    block = 2048
    part = data[:sample]
    start = time.perf_counter()
    count = 0
    for i in range(0, sample, block):
        sims = part[i : i + block] @ part.T
        count += int((sims >= threshold).sum())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--size", type=int, default=4)
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--sample", type=int, default=10_000)
    parser.add_argument(
        "--search-limit", type=int, default=20_000, help="also time the neighbour search up to N"
    )
    args = parser.parse_args()

    from clipseek.search import duplicates
    from clipseek.search.duplicates import find_duplicates
    from clipseek.store import Record, Store

    header(f"duplicates over {args.n} vectors, {args.groups} planted groups of {args.size}")
    data = cone(args.n)
    truth = planted(data, args.groups, args.size)
    with tempfile.TemporaryDirectory(prefix="clipseek-dups-") as tmp:
        store = Store(Path(tmp) / "db")
        index = store.create_index("bench", "bench", "bench", DIM)
        start = time.perf_counter()
        step = 5000
        for lo in range(0, args.n, step):
            index.upsert(
                [
                    Record(f"/photos/{i // 1000}/{i}.jpg", data[i], 1000 + i, i, 640, 480)
                    for i in range(lo, min(args.n, lo + step))
                ]
            )
        insert = time.perf_counter() - start
        start = time.perf_counter()
        groups = find_duplicates(index, args.threshold)
        grouping = time.perf_counter() - start
        searched = None
        if args.n <= args.search_limit:  # the neighbour search, forced, for comparison
            duplicates.EXACT_LIMIT, saved = 0, duplicates.EXACT_LIMIT
            start = time.perf_counter()
            by_search = find_duplicates(index, args.threshold)
            searched = time.perf_counter() - start
            duplicates.EXACT_LIMIT = saved
            same = sorted(sorted(i.id for i in g.items) for g in by_search) == sorted(
                sorted(i.id for i in g.items) for g in groups
            )

    def row(path: str) -> int:
        return int(Path(path).stem)

    found = [{row(i.path) for i in g.items} for g in groups]
    found_pairs = {(a, b) for g in found for a in g for b in g if a < b}
    true_pairs = {(a, b) for g in truth for a in g for b in g if a < b}
    recall = len(found_pairs & true_pairs) / len(true_pairs)
    extra = len(found_pairs - true_pairs)
    sample = min(args.sample, args.n)
    exact = exact_pairs_seconds(data, args.threshold, sample) * (args.n / sample) ** 2
    print(f"insert: {insert:.1f} s ({args.n / insert:,.0f} vectors/s)")
    path = "exact scan" if args.n <= duplicates.EXACT_LIMIT else "neighbour search"
    print(f"grouping ({path}): {grouping:.1f} s ({args.n / grouping:,.0f} vectors/s)")
    if searched is not None:
        print(f"neighbour search forced: {searched:.1f} s, same groups: {same}")
    print(f"planted pairs found: {recall:.3f}; pairs not planted: {extra}")
    print(f"exact all-pairs scan, extrapolated from {sample}: {exact:.1f} s")
    print(f"ratio, grouping ÷ exact scan: {grouping / exact:.2f}")


if __name__ == "__main__":
    main()
