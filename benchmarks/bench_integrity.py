"""What the integrity checks cost: the structural check, reading the stored vectors,
``check`` and ``repair --force`` on N random unit vectors written through ``Store``.

    python benchmarks/bench_integrity.py 6000 [DIM] [FOLDER]

Figures in docs/RELIABILITY.md ("What it costs").
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from clipseek.store import Record, Store
from clipseek.store.integrity import find_damage
from clipseek.store.repair import check, read_stored, repair


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 6000
    dim = int(sys.argv[2]) if len(sys.argv) > 2 else 512
    folder = Path(sys.argv[3]) if len(sys.argv) > 3 else Path(tempfile.mkdtemp()) / "db"
    if not folder.exists():
        index = Store(folder).create_index("m", "m", "m", dim)
        rng = np.random.default_rng(0)
        t = time.perf_counter()
        for start in range(0, n, 2000):
            size = min(2000, n - start)
            v = rng.normal(size=(size, dim)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            index.upsert(
                [
                    Record(f"/x/d{(start + i) % 50}/f{start + i}.jpg", v[i], 100, 1000, 10, 10)
                    for i in range(size)
                ]
            )
        print(f"build {time.perf_counter() - t:.1f}s", flush=True)
    for _ in range(3):
        t = time.perf_counter()
        find_damage(folder)
        print(f"structural check {time.perf_counter() - t:.3f}s", flush=True)
    t = time.perf_counter()
    collections = read_stored(folder)
    print(f"read_stored {time.perf_counter() - t:.2f}s ({len(collections[0].vectors)} vectors)")
    t = time.perf_counter()
    report = check(Store(folder, create=False))
    print(f"check {time.perf_counter() - t:.1f}s healthy={report.healthy}", flush=True)
    t = time.perf_counter()
    repaired = repair(Store(folder), force=True)
    assert repaired is not None and repaired.after is not None
    print(f"repair --force {time.perf_counter() - t:.1f}s healthy={repaired.after.healthy}")


if __name__ == "__main__":
    main()
