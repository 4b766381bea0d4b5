"""Benchmark 4: re-indexing an unchanged tree, and renaming an indexed folder.

A tree of N small PNGs (default 10,000 in 100 folders) is indexed once (tiny model:
what is measured here never runs a model). Then:
  unchanged re-index   Engine.index on the same tree: a walk with stat() calls and one
                       read of the stored sizes and mtimes; target ≤ 1.5 s at 10k
  CLI re-index         the same as `clipseek index TREE` in a fresh process
  renamed folder       a folder of 1,000 indexed images renamed: target 0 model runs
Baselines in the same run: the bare directory walk (os.scandir + stat of every file),
and a fresh process importing chromadb (which any CLI re-index pays).

    python benchmarks/bench_reindex.py --quick     # 2,000 files, 200 renamed
    python benchmarks/bench_reindex.py --quick --failed   # plus one file that fails to read
    python benchmarks/bench_reindex.py --repeat 8 --baseline /tmp/old-checkout

``--baseline DIR`` also times the fresh-process re-index with another checkout's code,
interleaved with this one's, each run from its own folder (``python -m clipseek`` imports
the working folder's package first).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, cache_root, compile_sources, header, median


def make_tree(root: Path, count: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        path = root / f"folder{i // 100:03d}" / f"img{i:05d}.png"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)


def walk(root: Path) -> int:
    count = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                st = entry.stat()
                if entry.is_dir():
                    stack.append(entry.path)
                else:
                    count += st.st_size >= 0
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--files", type=int, help="default 10000 (quick 2000)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument(
        "--failed", action="store_true", help="the tree also holds a file that fails to read"
    )
    args = parser.parse_args()
    count = args.files or (2000 if args.quick else 10_000)
    renamed = min(1000, count // 10)
    header(f"re-index of {count:,} unchanged files; rename of a {renamed:,}-image folder")

    from clipseek.config import load_settings
    from clipseek.engine import Engine
    from clipseek.testing import build_tiny_model

    base = cache_root() / f"reindex-{count}{'-failed' if args.failed else ''}"
    tree, db = base / "tree", base / "db"
    model_dir = base / "tiny-model"
    if not (model_dir / "open_clip_config.json").exists():
        build_tiny_model(model_dir)
    if not (base / "indexed").exists():  # later, the album holds some of these files
        make_tree(tree, count)
        if args.failed:  # the index records it as unreadable; every run names it again
            (tree / "folder000" / "broken.jpg").write_bytes(b"not a picture")
    settings = load_settings({"model": f"local-dir:{model_dir}", "db": db, "device": "cpu"})
    if not (base / "indexed").exists():
        start = time.perf_counter()
        summary = Engine(settings).index([tree])
        print(f"first index: {summary.embedded} files in {time.perf_counter() - start:.0f} s")
        (base / "indexed").write_text("ok")

    # The album to rename: the first `renamed` files, moved into one folder once.
    album = tree / "album"
    if not album.exists():
        album.mkdir()
        moved = 0
        for folder in sorted(tree.glob("folder*")):
            for path in sorted(folder.glob("*.png")):
                if moved == renamed:
                    break
                path.rename(album / path.name)
                moved += 1
        Engine(settings).index([tree])

    compile_sources(ROOT)  # the CLI runs below are fresh processes
    baseline = args.baseline.resolve() if args.baseline else None
    if baseline is not None:
        compile_sources(baseline)
    walks, warm, cli, chroma, old = [], [], [], [], []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "clipseek", "index", str(tree), "--db", str(db)]
    cmd += ["-m", f"local-dir:{model_dir}"]
    for _ in range(args.repeat):
        if baseline is not None:
            start = time.perf_counter()
            subprocess.run(
                cmd,
                env={**env, "PYTHONPATH": str(baseline)},
                cwd=baseline,
                check=True,
                capture_output=True,
            )
            old.append(time.perf_counter() - start)
        start = time.perf_counter()
        assert walk(tree) >= count
        walks.append(time.perf_counter() - start)
        engine = Engine(settings)
        start = time.perf_counter()
        summary = engine.index([tree])
        warm.append(time.perf_counter() - start)
        assert summary.unchanged == count and not summary.model_loaded, summary
        start = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True)
        cli.append(time.perf_counter() - start)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import chromadb"], env=env, check=True)
        chroma.append(time.perf_counter() - start)

    rename_times, results = [], []
    for step in range(2):  # rename away and back, so the cached tree stays as it was
        src, dst = (album, tree / "album renamed") if step == 0 else (tree / "album renamed", album)
        src.rename(dst)
        start = time.perf_counter()
        summary = Engine(settings).index([tree])
        rename_times.append(time.perf_counter() - start)
        results.append(summary)

    w, u = median(walks), median(warm)
    print()
    print("| measurement | median s | ratio | target |")
    print("|---|---|---|---|")
    print(f"| bare walk + stat of {count:,} files (baseline) | {w:.3f} | 1.0 | |")
    print(f"| Engine.index, unchanged, in process | {u:.3f} | {u / w:.1f}× walk | ≤ 1.5 s |")
    c, i = median(cli), median(chroma)
    print(f"| fresh process `import chromadb` (baseline) | {i:.2f} | 1.0 | |")
    print(f"| `clipseek index` CLI, unchanged | {c:.2f} | {c / i:.1f}× import | ≤ 0.5 s |")
    if old:
        b = median(old)
        print(f"| the same with {baseline} | {b:.2f} | this ÷ baseline {c / b:.2f}× | |")
    for summary, seconds in zip(results, rename_times, strict=True):
        print(
            f"| rename of a {renamed:,}-image folder | {seconds:.2f} | "
            f"model runs {summary.model_batches}, model loaded {summary.model_loaded}, "
            f"reused {summary.reused}, decoded {summary.embedded} | 0 model runs |"
        )


if __name__ == "__main__":
    main()
