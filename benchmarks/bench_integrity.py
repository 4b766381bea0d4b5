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
    fresh_process_checks(folder)
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


def fresh_process_checks(folder: Path) -> None:
    """The structural check as a fresh process pays for it (numpy's import included), with
    the graph note a writer keeps and without: what an unchanged re-index and a query
    spend before their work. Medians of 5; each against ``python -c pass`` run alike."""
    import os
    import statistics
    import subprocess

    find_damage(folder, notes="keep")  # the note an unchanged re-index keeps
    code = (
        "import sys; from pathlib import Path; from clipseek.store.integrity import find_damage; "
    )
    cases = {
        "python -c pass (baseline)": "pass",
        "every link read (notes='ignore')": code + "find_damage(Path(sys.argv[1]))",
        "with the writer's note (notes='read')": code
        + "find_damage(Path(sys.argv[1]), notes='read')",
    }
    env = dict(os.environ)
    for name, snippet in cases.items():
        times = []
        for _ in range(5):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", snippet, str(folder)], check=True, env=env)
            times.append(time.perf_counter() - t)
        print(f"fresh process, {name}: {statistics.median(times):.3f}s", flush=True)


if __name__ == "__main__":
    main()
