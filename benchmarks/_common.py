"""Shared set-up for the benchmarks: an offline ViT-B/32 stand-in, cached corpora,
the machine's description, and small statistics helpers.

Benchmarks are run by hand (``python benchmarks/bench_index.py --quick``), never by
pytest: these machines are shared and noisy, so every script measures its own
baseline in the same run and prints ratios against it.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def cache_root() -> Path:
    """Where generated corpora and the stand-in checkpoint are kept between runs."""
    override = os.environ.get("CLIPSEEK_BENCH_CACHE")
    base = Path(override) if override else Path(tempfile.gettempdir()) / "clipseek-bench"
    base.mkdir(parents=True, exist_ok=True)
    return base


def compile_sources(code: Path) -> None:
    """Compile a checkout's ``clipseek`` package, as pip does on install: a checkout run with
    ``PYTHONDONTWRITEBYTECODE`` (these machines set it) would otherwise compile clipseek's
    sources again in every fresh process and time that too."""
    import compileall

    compileall.compile_dir(str(code / "clipseek"), quiet=1)


def use_standin_cache() -> Path:
    """Point huggingface_hub at a private cache holding a random ViT-B/32 checkpoint of the
    real shape, so ``ViT-B/32`` loads offline exactly as it would with real weights.
    Must run before huggingface_hub is imported."""
    hub = cache_root() / "hf-hub"
    os.environ["HF_HUB_CACHE"] = str(hub)
    os.environ["HF_HUB_OFFLINE"] = "1"
    marker = hub / ".standin-ready"
    if not marker.exists():
        from clipseek.testing import install_hf_standin

        install_hf_standin(hub)
        marker.write_text("ok")
    return hub


def machine() -> str:
    """CPU model, usable cores, torch version: what a figure depends on."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 0
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load {os.getloadavg()[0]:.1f}"
    return f"{model}, {cores} cores{load}, Python {platform.python_version()}"


def torch_version() -> str:
    import torch

    return torch.__version__


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, q in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(len(ordered), rank) - 1]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


@contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix, dir=cache_root()) as name:
        yield Path(name)


def header(title: str) -> None:
    print(f"# {title}")
    print(f"# machine: {machine()}")
    print(f"# command: {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}")
    sys.stdout.flush()


def wall_and_peak(
    args: list[str], env: dict[str, str], cwd: Path | None = None
) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MB) of one fresh child, and its stdout: a wrapper
    process runs it alone, so its ``RUSAGE_CHILDREN`` peak is that child's."""
    wrapper = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        "out = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "wall = time.perf_counter() - t\n"
        "if out.returncode: sys.stderr.write(out.stdout + out.stderr); sys.exit(1)\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps([wall, rss, out.stdout[-2000:]]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper, *args], env=env, cwd=cwd, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"{args} failed:\n{out.stderr[-3000:]}")
    wall, rss, stdout = json.loads(out.stdout.strip().splitlines()[-1])
    return float(wall), float(rss), stdout
