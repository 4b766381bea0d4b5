"""Benchmark 5: peak memory (RSS) of `clipseek index` with ViT-B/32 on the CPU.

Each run is a fresh `python -m clipseek index` process over the generated 12 MP JPEG
corpus (bench_index.py's), into a new database; its peak RSS is the kernel's
high-water mark for the child (ru_maxrss). Baseline in the same run: a process that
only imports torch and open_clip and loads the same checkpoint the plain way
(fp32 ``open_clip.create_model(pretrained=...)``), i.e. the floor any PyTorch
CLIP indexer starts from.

    python benchmarks/bench_memory.py --quick
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, cache_root, header, median, temp_dir, use_standin_cache

PLAIN_LOAD = r"""
import open_clip
from clipseek.models import cached_weights, resolve_model
spec = resolve_model("ViT-B/32")
model = open_clip.create_model(spec.arch, pretrained=cached_weights(spec))
"""


def peak_rss_mb(args: list[str], env: dict[str, str]) -> float:
    """Peak RSS of one child process, in MB (a fresh wrapper per call, so that the
    children's high-water mark belongs to this command alone)."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper, *args], env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    kb = int(out.stdout.strip().splitlines()[-1])
    return kb / 1024 if sys.platform != "darwin" else kb / 1024 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="32 JPEGs, 2 runs")
    parser.add_argument("--jpegs", type=int)
    parser.add_argument("--repeat", type=int)
    parser.add_argument("--precision", default="auto,fp32")
    args = parser.parse_args()
    count = args.jpegs or (32 if args.quick else 64)
    repeat = args.repeat or (2 if args.quick else 3)
    header("peak RSS while indexing with ViT-B/32 on the CPU")
    hub = use_standin_cache()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_index import corpus

    photos = corpus("jpeg", count)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_CACHE": str(hub),
        "HF_HUB_OFFLINE": "1",
        "CLIPSEEK_CONFIG": str(cache_root() / "no-config.toml"),
    }
    plain: list[float] = []
    runs: dict[str, list[float]] = {p: [] for p in args.precision.split(",")}
    for _ in range(repeat):
        plain.append(peak_rss_mb([sys.executable, "-c", PLAIN_LOAD], env))
        for precision in runs:
            with temp_dir("mem-db-") as db:
                cmd = [sys.executable, "-m", "clipseek", "index", str(photos), "--db", str(db)]
                cmd += ["-m", "ViT-B/32", "--precision", precision]
                runs[precision].append(peak_rss_mb(cmd, env))
    base = median(plain)
    print()
    print("| process | peak RSS MB | ÷ baseline | target |")
    print("|---|---|---|---|")
    print(f"| import torch+open_clip, load ViT-B/32 fp32 (baseline) | {base:.0f} | 1.00 | |")
    for precision, values in runs.items():
        m = median(values)
        print(
            f"| clipseek index, {count} × 12 MP JPEG, --precision {precision} | {m:.0f} "
            f"| {m / base:.2f} | ≤ 1200 MB |"
        )


if __name__ == "__main__":
    main()
