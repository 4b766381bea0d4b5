"""Benchmark 3: cold start — each command in a fresh Python process, as a user runs it.

Timed (median of --repeat runs, wall clock, file cache warm):
  python -c pass                           the interpreter alone (baseline)
  clipseek --help                          target ≤ 0.25 s
  clipseek info                            no torch, open_clip or chromadb
  python -c "import torch, open_clip, chromadb"   what any query must import (baseline)
  clipseek query "..." with ViT-B/32       target ≤ 1.0 s through the ONNX fast path
                                           (random stand-in weights; see bench_fastpath.py)
  TUI first paint                          target ≤ 0.5 s (benchmarks/tui_first_paint.py)

    python benchmarks/bench_cold.py --quick
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, cache_root, header, median, use_standin_cache

HEAVY = ("torch", "open_clip", "chromadb")


def run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return elapsed, out.stdout


def heavy_after(cli_args: list[str], env: dict[str, str]) -> list[str]:
    code = (
        "import sys\nfrom clipseek.cli.app import app\n"
        f"sys.argv = ['clipseek', *{cli_args!r}]\n"
        "try:\n    app(prog_name='clipseek')\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    _, out = run([sys.executable, "-c", "import json\n" + code], env)
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 runs each instead of 7")
    parser.add_argument("--repeat", type=int)
    args = parser.parse_args()
    repeat = args.repeat or (3 if args.quick else 7)
    header("cold start, fresh process per run")
    hub = use_standin_cache()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_CACHE": str(hub),
        "HF_HUB_OFFLINE": "1",
        "CLIPSEEK_CONFIG": str(cache_root() / "no-config.toml"),
        # The index run exports the ONNX fast path here (not into ~/.cache), so the timed
        # queries are what a user gets after indexing; bench_fastpath.py sets ONNX
        # against torch side by side.
        "XDG_CACHE_HOME": str(cache_root() / "cold-xdg-cache"),
    }
    env.pop("CLIPSEEK_DB", None)
    db = cache_root() / "cold-db"
    clipseek = [sys.executable, "-m", "clipseek"]
    if not (db / "ready").exists():
        from clipseek.testing import write_photo_corpus

        photos = write_photo_corpus(cache_root() / "cold-photos", 8, size=(320, 240), fmt="png")
        run([*clipseek, "index", str(photos[0].parent), "--db", str(db), "-m", "ViT-B/32"], env)
        (db / "ready").write_text("ok")
    # An untimed query first: it exports the fast path if the index run did not.
    run([*clipseek, "query", "warm-up", "--db", str(db), "-m", "ViT-B/32"], env)

    cases = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("clipseek --help", [*clipseek, "--help"]),
        ("clipseek info", [*clipseek, "info", "--db", str(db)]),
        (
            "import torch, open_clip, chromadb",
            [sys.executable, "-c", "import torch, open_clip, chromadb"],
        ),
        (
            'clipseek query "a dog on a beach"',
            [*clipseek, "query", "a dog on a beach", "--db", str(db), "-m", "ViT-B/32", "--json"],
        ),
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    for _ in range(repeat):
        for name, argv in cases:
            times[name].append(run(argv, env)[0])
    tui_summary = ""
    tui_script = Path(__file__).resolve().parent / "tui_first_paint.py"
    if importlib.util.find_spec("clipseek.tui") is None or not tui_script.exists():
        tui_summary = "TUI first paint: skipped (clipseek.tui is not in this checkout)"
    else:  # the TUI's own benchmark, which knows when its first screen is up
        _, tui_summary = run([sys.executable, str(tui_script), "--samples", str(repeat)], env)

    base = median(times["python -c pass"])
    imports = median(times["import torch, open_clip, chromadb"])
    print()
    print("| command | median s | − interpreter start | target |")
    print("|---|---|---|---|")
    targets = {"clipseek --help": "≤ 0.25 s", 'clipseek query "a dog on a beach"': "≤ 1.0 s"}
    for name, _ in cases:
        m = median(times[name])
        print(f"| {name} | {m:.2f} | {m - base:.2f} | {targets.get(name, '')} |")
    q = median(times['clipseek query "a dog on a beach"'])
    print(f"\ncold query ÷ bare imports of torch+open_clip+chromadb: {q / imports:.2f}×")
    print("heavy modules imported by --help:", heavy_after(["--help"], env) or "none")
    print("heavy modules imported by info:", heavy_after(["info", "--db", str(db)], env) or "none")
    print()
    print(tui_summary.strip())


if __name__ == "__main__":
    main()
