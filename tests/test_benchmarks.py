"""The benchmarks that only run on borrowed machines still run: a change to the indexer
that breaks them fails here, on the CPU, rather than in a GPU session's few minutes.

Nothing here checks a speed (the figures mean nothing at these sizes on a shared CPU);
these check that every section ran and wrote its figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "CLIPSEEK_BENCH_CACHE": str(tmp_path / "bench-cache")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.mark.slow
def test_gpu_run_script_runs_every_step_on_the_cpu(tmp_path: Path, tiny_model: str) -> None:
    """run_on_gpu.sh --cpu-smoke: bench_gpu.py --quick --device cpu, then the store at a
    small --n, through the same script a GPU session runs."""
    out = tmp_path / "out"
    env = {**_env(tmp_path), "OUT": str(out), "PYTHON": sys.executable}
    # The ONNX runtime (exported once in the benchmark's process) keeps each of its
    # `clipseek index` runs from importing torch again.
    smoke_args = ["--model", tiny_model, "--backend", "onnx"]
    run = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "run_on_gpu.sh"), "--cpu-smoke", *smoke_args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    log = (out / "bench_gpu.log").read_text() if (out / "bench_gpu.log").exists() else ""
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + log[-3000:]
    figures = json.loads((out / "gpu.json").read_text())
    assert "errors" not in figures, figures["errors"]
    assert set(figures["decode"]) == {
        "640x480/threads",
        "640x480/processes",
        "12MP/threads",
        "12MP/processes",
    }
    assert all(rate > 0 for rate in figures["decode"].values())
    assert all(rate > 0 for rate in figures["chroma"].values())
    assert (
        figures["end_to_end"]["640x480"]["large"][0] > figures["end_to_end"]["640x480"]["small"][0]
    )
    assert "BatchDone" in figures["startup"] and figures["startup"]["torch_imported"] is False
    assert figures["query"]["results"] > 0
    assert all(v["encode_prepared"] > 0 for v in figures["model_only"].values())
    store = json.loads((out / "store.json").read_text())
    assert store["n"] == 2000 and store["this"]["recall_at_10"] > 0.9


@pytest.mark.slow
def test_store_benchmark_runs_at_a_small_size(tmp_path: Path) -> None:
    result = tmp_path / "store.json"
    small = ["--n", "1500", "--queries", "10", "--centres", "30", "--dir", str(tmp_path / "db")]
    small += ["--json", str(result)]
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_store_million.py"), *small],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = json.loads(result.read_text())
    assert figures["n"] == 1500
    this = figures["this"]
    assert this["recall_at_10"] > 0.9 and this["filtered_all_inside"]
    assert all(t > 0 for t in this["cold_query_s"])
