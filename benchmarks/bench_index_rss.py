"""Peak RSS of `clipseek index` with torch bf16 (issue 26), and where it is reached.

Each run is a fresh ``clipseek index`` process (the real CLI, in-process in a small
wrapper) over the generated 12 MP JPEG corpus, into a new database, with the ViT-B/32
stand-in. The wrapper samples ``VmRSS`` every 20 ms and notes it at the model load and at
each index event, so the output says where the peak is reached; the peak itself is the
kernel's high-water mark (``VmHWM``). The baseline in the same run is another checkout
of clipseek (``--code NAME=PATH``, e.g. ``git archive BASE | tar -x -C /tmp/base``) run
the same way, interleaved. The ONNX export is turned off (``CLIPSEEK_NO_EXPORT=1``): a
first torch run would otherwise export the fast path after indexing, once per model.

    python benchmarks/bench_index_rss.py --files 50 --repeat 2 --code base=/tmp/base
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, cache_root, compile_sources, header, median, temp_dir, use_standin_cache

_CHILD = r"""
import json, os, sys, threading, time
code, photos, db = sys.argv[1:4]
extra = sys.argv[4:]
sys.path.insert(0, code)

def rss(field="VmRSS"):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0

marks = []          # (label, RSS MB when it happened)
peak_since = [0.0]  # highest sample since the last mark
phases = {}         # label -> highest RSS sampled after that label and before the next
current = ["start"]
stop = threading.Event()

def sample():
    while not stop.is_set():
        for name in ("torch", "open_clip", "chromadb", "onnxruntime"):
            if name in sys.modules and f"import {name}" not in phases:
                mark(f"import {name}")  # (noticed within 20 ms)
        value = rss()
        phases[current[0]] = max(phases.get(current[0], 0.0), value)
        stop.wait(0.02)

def mark(label):
    value = rss()
    phases[current[0]] = max(phases.get(current[0], 0.0), value)
    if label not in phases:
        marks.append((label, round(value)))
    current[0] = label
    phases[label] = max(phases.get(label, 0.0), value)

threading.Thread(target=sample, daemon=True).start()
import clipseek.engine as engine_mod
import clipseek.models.runtime as runtime_mod
real_load = engine_mod.load_index_model
def load(*args, **kwargs):
    mark("model load")
    model = real_load(*args, **kwargs)
    mark("model loaded")
    return model
engine_mod.load_index_model = load
import clipseek.models.onnx_backend as onnx_mod
real_session = onnx_mod.load_session
sessions = []
def session(path, threads, **kw):
    sessions.append((os.path.basename(path), threads))
    mark(f"ONNX session {len(sessions)}: {threads} threads")
    return real_session(path, threads, **kw)
onnx_mod.load_session = session
real_index = engine_mod.Engine.index
def index(self, roots, options=None, on_event=None, *a, **kw):
    def seen(event):
        mark(type(event).__name__)
        if on_event is not None:
            on_event(event)
    return real_index(self, roots, options, seen, *a, **kw)
engine_mod.Engine.index = index
from clipseek.cli.entry import main
sys.argv = ["clipseek", "index", photos, "--db", db, "-m", "ViT-B/32", *extra]
t0 = time.perf_counter()
try:
    main()
except SystemExit as exc:
    if exc.code not in (0, None):
        raise
wall = time.perf_counter() - t0
stop.set()
print("RESULT " + json.dumps({"peak": rss("VmHWM"), "wall": wall, "marks": marks,
      "sessions": sessions,
      "phases": {k: round(v) for k, v in phases.items()}}))
"""


def run_once(code: Path, photos: Path, env: dict[str, str], extra: list[str]) -> dict:
    with temp_dir("rss-db-") as db:
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(code), str(photos), str(db), *extra],
            env=env,
            capture_output=True,
            text=True,
        )
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise SystemExit(out.stdout[-2000:] + out.stderr[-3000:])
    return json.loads(lines[-1][7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="another checkout to compare with (repeatable; the first is the baseline)",
    )
    parser.add_argument("--args", default="--backend torch --precision bf16")
    args = parser.parse_args()
    header(f"peak RSS of clipseek index ({args.args}), {args.files} × 12 MP JPEG, ViT-B/32")
    hub = use_standin_cache()
    from bench_index import corpus

    photos = corpus("jpeg", args.files)
    codes = {n: Path(p).resolve() for n, p in (c.split("=", 1) for c in args.code)}
    codes["this checkout"] = ROOT
    for code in codes.values():
        compile_sources(code)
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(hub),
        "HF_HUB_OFFLINE": "1",
        "CLIPSEEK_CONFIG": str(cache_root() / "no-config.toml"),
        "XDG_CACHE_HOME": str(cache_root() / "xdg-rss"),
        "CLIPSEEK_NO_EXPORT": "1",
    }
    env.pop("PYTHONPATH", None)
    runs: dict[str, list[dict]] = {name: [] for name in codes}
    for r in range(args.repeat):
        order = list(codes) if r % 2 == 0 else list(reversed(codes))  # interleaved
        for name in order:
            result = run_once(codes[name], photos, env, args.args.split())
            runs[name].append(result)
            print(
                f"  {name}: peak {result['peak']:.0f} MB, {result['wall']:.1f} s "
                f"(load average {os.getloadavg()[0]:.1f})",
                flush=True,
            )
            print(f"    RSS at: {result['marks']}", flush=True)
            print(f"    highest RSS after each mark: {result['phases']}", flush=True)
    print("\n| code | peak RSS MB (median) | runs | ÷ first |")
    print("|---|---|---|---|")
    first = None
    for name, results in runs.items():
        m = median([x["peak"] for x in results])
        first = first or m
        values = ", ".join(f"{x['peak']:.0f}" for x in results)
        print(f"| {name} | {m:,.0f} | {values} | {m / first:.2f} |")
    print(f"# load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
