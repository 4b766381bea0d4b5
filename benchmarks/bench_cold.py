"""Benchmark 3: cold start — each command in a fresh Python process, as a user runs it.

Timed (median of --repeat runs, wall clock, file cache warm):
  python -c pass                           the interpreter alone (baseline)
  clipseek --help                          target ≤ 0.25 s
  clipseek info                            no torch, open_clip or chromadb
  python -c "import torch, open_clip, chromadb"   what any query must import (baseline)
  clipseek query "..." with ViT-B/32       target ≤ 2.5 s (random stand-in weights)
  TUI first paint                          target ≤ 0.5 s, when clipseek.tui exists

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

TUI_PROBE = r"""
import asyncio, sys, time
start = time.perf_counter()
import clipseek.tui as tui
from textual.app import App

def find_app():
    for module in (tui, getattr(tui, "app", None)):
        for value in vars(module).values() if module else ():
            if isinstance(value, type) and issubclass(value, App) and value is not App:
                return value
    raise SystemExit("no textual App subclass found in clipseek.tui")

cls = find_app()
try:
    app = cls()
except TypeError:
    from clipseek.config import load_settings
    app = cls(load_settings())

async def main():
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        print("PAINT", time.perf_counter() - start)
        print("HEAVY", [m for m in ("torch", "open_clip", "chromadb") if m in sys.modules])

asyncio.run(main())
"""


def run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return elapsed, out.stdout


def heavy_after(cli_args: list[str], env: dict[str, str]) -> list[str]:
    code = (
        "import sys\nfrom clipseek.cli import app\n"
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
    }
    env.pop("CLIPSEEK_DB", None)
    db = cache_root() / "cold-db"
    clipseek = [sys.executable, "-m", "clipseek"]
    if not (db / "ready").exists():
        from clipseek.testing import write_photo_corpus

        photos = write_photo_corpus(cache_root() / "cold-photos", 8, size=(320, 240), fmt="png")
        run([*clipseek, "index", str(photos[0].parent), "--db", str(db), "-m", "ViT-B/32"], env)
        (db / "ready").write_text("ok")

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
    paint: list[float] = []
    tui_note = ""
    tui_heavy: list[str] = []
    if importlib.util.find_spec("clipseek.tui") is None:
        tui_note = "skipped: clipseek.tui does not exist in this checkout"
    else:
        for _ in range(repeat):
            try:
                _, out = run([sys.executable, "-c", TUI_PROBE], {**env, "CLIPSEEK_DB": str(db)})
            except SystemExit as exc:
                tui_note = f"failed: {str(exc).strip().splitlines()[-1]}"
                break
            lines = out.splitlines()
            paint.append(float(next(x for x in lines if x.startswith("PAINT")).split()[1]))
            tui_heavy = json.loads(
                next(x for x in lines if x.startswith("HEAVY"))[6:].replace("'", '"')
            )

    base = median(times["python -c pass"])
    imports = median(times["import torch, open_clip, chromadb"])
    print()
    print("| command | median s | − interpreter start | target |")
    print("|---|---|---|---|")
    targets = {"clipseek --help": "≤ 0.25 s", 'clipseek query "a dog on a beach"': "≤ 2.5 s"}
    for name, _ in cases:
        m = median(times[name])
        print(f"| {name} | {m:.2f} | {m - base:.2f} | {targets.get(name, '')} |")
    if paint:
        print(f"| TUI first paint (in-process) | {median(paint):.2f} | | ≤ 0.5 s |")
    else:
        print(f"| TUI first paint | — | | ≤ 0.5 s ({tui_note}) |")
    q = median(times['clipseek query "a dog on a beach"'])
    print(f"\ncold query ÷ bare imports of torch+open_clip+chromadb: {q / imports:.2f}×")
    print("heavy modules imported by --help:", heavy_after(["--help"], env) or "none")
    print("heavy modules imported by info:", heavy_after(["info", "--db", str(db)], env) or "none")
    if paint:
        print("heavy modules imported at TUI first paint:", tui_heavy or "none")


if __name__ == "__main__":
    main()
