"""The app and ``clipseek serve`` on a large store, against a baseline checkout (issue 24).

Two parts, each reading the same store (one made by ``bench_store_million.py``, 512-d
synthetic vectors, key "bench:million") through each checkout's code at the Store level,
as the faces build it: ``serve`` is what ``clipseek serve`` builds (the baseline's: a
reader that reads through a private snapshot and Chroma's HNSW; this checkout's: the
direct reader with ``approximate``), ``app`` what the Textual app builds (the direct
reader, quick-start ONNX sessions).

- ``launch``: a fresh process per face and checkout: the first answer of a text query
  (the shipped shapes model through ONNX encodes the text, on a thread while the index
  opens, as the faces do; the 512-d store is searched with a query vector of the
  benchmark's, since the shapes model's vectors are 32-d), then the warm p50/p95 of text
  encoding plus search, memory at rest (VmRSS after the answers) and its peak;
- ``catch-up``: a reader process with the store open and one answer given; a writer (this
  process, this checkout's writer) adds ``--add`` pictures through ``ImageIndex.upsert``;
  then the reader searches for one of them until it is found: the time from the writer's
  commit to that answer, the reader's memory after it. Readers take turns (this,
  baseline, this, ...) over ``--rounds``, so load falls on both alike; the store grows by
  ``--add`` each turn.

    nice -n 10 python benchmarks/bench_serve_scale.py --store /tmp/s100k-copy \
        --baseline /tmp/main-checkout

The store is written to by ``catch-up``: give a copy (``cp -a``), or ``--read-only`` (launch
only) to measure a store in place.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, cache_root, compile_sources, header, percentile
from bench_store_million import CHUNK, queries, record, vectors

_HELPERS = r"""
import json, os, sys, threading, time
def rss_mb(field="VmRSS"):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0
def reader_store(db, face):
    from clipseek.store import Store
    if face == "serve-snapshot":
        return Store(db, reader=True)
    try:
        return Store(db, reader=True, direct=True, approximate=(face == "serve"))
    except TypeError:  # a checkout without the seam
        return Store(db, reader=True, direct=True)
def snapshots():
    from clipseek.store.snapshot import SNAPSHOT_PREFIX, snapshot_bases
    mine, out = f"{SNAPSHOT_PREFIX}{os.getpid()}-", 0
    for base in snapshot_bases():
        try:
            out += sum(e.name.startswith(mine) for e in os.scandir(base))
        except OSError:
            pass
    return out
"""

_LAUNCH = r"""
start = time.perf_counter()
import numpy as np
db, qfile, key, slug, face, spec_text, rounds = sys.argv[1:8]
from clipseek.models import resolve_model
from clipseek.models.onnx_backend import load_onnx_model
spec = resolve_model(spec_text)
model = {}
def load():
    model["m"] = load_onnx_model(spec, prepack=(face != "app"))
    model["m"].warm("text")
loader = threading.Thread(target=load)
loader.start()
store = reader_store(db, face)
index = store.open_index(key, slug)
qs = np.load(qfile)
loader.join()
m = model["m"]
text = "a red circle on a dark background"
m.encode_texts([text])
hits = index.query(qs[0], 10)
first = time.perf_counter() - start
times = []
for i in range(int(rounds)):
    t = time.perf_counter()
    m.encode_texts([f"{text} {i}"])
    store.open_index(key, slug).query(qs[1 + i % (len(qs) - 1)], 10)
    times.append(time.perf_counter() - t)
time.sleep(0.5)
print("RESULT " + json.dumps({
    "first_s": first, "times": times, "rss_mb": rss_mb(), "peak_mb": rss_mb("VmHWM"),
    "snapshots": snapshots(), "from_cache": getattr(index, "from_cache", None),
    "chromadb": "chromadb" in sys.modules,
}), flush=True)
"""

_READER = r"""
import numpy as np
db, key, slug, face, qfile = sys.argv[1:6]
store = reader_store(db, face)
index = store.open_index(key, slug)
qs = np.load(qfile)
index.query(qs[0], 10)
print("READY " + json.dumps({"rss_mb": rss_mb()}), flush=True)
for line in sys.stdin:
    words = line.split()
    if words[0] == "QUIT":
        break
    vector = np.load(words[1])
    expected = words[2]
    t = time.perf_counter()
    # What the next search does first, timed apart (the search itself scans as before).
    store.catch_up()
    caught = time.perf_counter() - t
    searches = 0
    while True:
        searches += 1
        s = time.perf_counter()
        # As the engine does for each search: a snapshot reader's index is per snapshot.
        hits = store.open_index(key, slug).query(vector, 10)
        last = time.perf_counter() - s
        if any(h.path == expected for h in hits):
            break
        if time.perf_counter() - t > 120:
            break
    took = time.perf_counter() - t
    print("FOUND " + json.dumps({
        "s": took, "catch_up_s": caught, "searches": searches, "last_search_s": last,
        "found": any(h.path == expected for h in hits), "rss_mb": rss_mb(),
        "peak_mb": rss_mb("VmHWM"), "snapshots": snapshots(),
        "chromadb": "chromadb" in sys.modules,
    }), flush=True)
"""


#: The store's one index: (model key, collection slug), found in main().
INDEX: list[str] = []


def _env(code: Path, xdg: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(code),
        "ANONYMIZED_TELEMETRY": "False",
        "HF_HUB_OFFLINE": "1",
        "XDG_CACHE_HOME": str(xdg),
    }


def launch(code: Path, xdg: Path, db: Path, qfile: Path, face: str, spec: str, n: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _HELPERS + _LAUNCH, str(db), str(qfile), *INDEX, face, spec,
         str(n)],
        capture_output=True, text=True, env=_env(code, xdg), cwd=str(code), timeout=1200,
    )  # fmt: skip
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"launch failed in {code}:\n{out.stdout[-2000:]}{out.stderr[-4000:]}")
    return json.loads(lines[-1][7:])


def ensure_export(spec_text: str, xdg: Path) -> None:
    """The shapes model's ONNX export in the benchmark's own cache (made once, by torch)."""
    os.environ["XDG_CACHE_HOME"] = str(xdg)
    from clipseek.models import load_model, resolve_model
    from clipseek.models.export import export_model, find_export

    spec = resolve_model(spec_text)
    if find_export(spec) is None:
        export_model(load_model(spec, device="cpu", precision="fp32"))


class Writer:
    """This checkout's writer on the store, kept open between rounds (as an index run is)."""

    def __init__(self, db: Path, centres: int) -> None:
        from clipseek.store import Store

        self.store = Store(str(db))
        self.index = self.store.open_index(*INDEX)
        self.next = self.index.count()
        self.centres = centres

    def add(self, count: int) -> tuple[float, str, object]:
        first = self.next
        start = first - first % CHUNK
        block = vectors(start, first - start + count, self.centres)[first - start :]
        t = time.perf_counter()
        self.index.upsert([record(first + j, v) for j, v in enumerate(block)])
        took = time.perf_counter() - t
        self.next += count
        return took, record(first + count - 1, block[-1]).path, block[-1]


def catch_up(readers, db: Path, qfile: Path, xdg: Path, rounds: int, add: int, centres: int):
    import numpy as np

    writer = Writer(db, centres)
    vfile = cache_root() / "serve-scale-new.npy"
    out: dict[str, list[dict]] = {label: [] for label, _, _ in readers}
    for r in range(rounds):
        for label, code, face in readers:
            proc = subprocess.Popen(
                [sys.executable, "-c", _HELPERS + _READER, str(db), *INDEX, face, str(qfile)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env=_env(code, xdg), cwd=str(code),
            )  # fmt: skip
            assert proc.stdin is not None and proc.stdout is not None
            ready = proc.stdout.readline()
            if not ready.startswith("READY "):
                raise SystemExit(f"reader failed ({label}): {ready}{proc.stderr.read()[-4000:]}")
            before = json.loads(ready[6:])
            time.sleep(1.2)  # past a snapshot reader's least interval between two snapshots
            wrote, path, vector = writer.add(add)
            np.save(vfile, vector)
            proc.stdin.write(f"FIND {vfile} {path}\n")
            proc.stdin.flush()
            found = proc.stdout.readline()
            proc.stdin.write("QUIT\n")
            proc.stdin.flush()
            proc.wait(timeout=120)
            if not found.startswith("FOUND "):
                raise SystemExit(f"reader failed ({label}): {found}{proc.stderr.read()[-4000:]}")
            res = {**json.loads(found[6:]), "write_s": wrote, "rss_before_mb": before["rss_mb"]}
            out[label].append(res)
            print(
                f"  round {r + 1} {label}: caught up in {res['catch_up_s'] * 1000:.1f} ms, "
                f"seen after {res['s'] * 1000:.0f} ms "
                f"({res['searches']} search(es)), write {wrote:.2f} s, RSS "
                f"{before['rss_mb']:.0f} -> {res['rss_mb']:.0f} MB, snapshots {res['snapshots']}",
                flush=True,
            )
    writer.store.close()
    return out


def _runs(values: list[float], fmt: str = ".2f") -> str:
    return ", ".join(format(v, fmt) for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True, help="a COPY of a bench store")
    parser.add_argument("--baseline", type=Path, required=True, help="a checkout to compare")
    parser.add_argument("--centres", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--add", type=int, default=100)
    parser.add_argument("--warm", type=int, default=100, help="warm answers per launch")
    parser.add_argument("--parts", default="launch,catch-up")
    parser.add_argument(
        "--faces",
        default="this serve,baseline serve,this app,baseline app",
        help="which launches to measure (comma list)",
    )
    parser.add_argument(
        "--read-only", action="store_true", help="write nothing to the store: launch only"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    parts = {"launch"} if args.read_only else set(args.parts.split(","))
    header("The app and clipseek serve on a large store (issue 24)")
    import numpy as np

    from clipseek.store import Store
    from clipseek.testing import fixture_model_spec

    db = args.store
    from clipseek.store.cache_build import refresh_caches
    from clipseek.store.records import COLLECTION_PREFIX

    if not args.read_only:
        # A copied store's cache files are not the writer's own: checked whole once and
        # noted, as an index run's end does, so readers trust them as the original's.
        refresh_caches(db)
    (info,) = Store(str(db), reader=True).peek_indexes() or []
    INDEX[:] = [info.model_key, info.collection.removeprefix(COLLECTION_PREFIX)]
    n = info.count
    print(f"store {db}: {n:,} pictures", flush=True)
    qs = queries(args.warm + 1, n, args.centres)
    qfile = cache_root() / "serve-scale-queries.npy"
    np.save(qfile, qs)
    xdg = cache_root() / "serve-scale-xdg"
    spec = fixture_model_spec()
    ensure_export(spec, xdg)
    for code in (ROOT, args.baseline):
        compile_sources(code)
    figures: dict = {"n": n}
    if "launch" in parts:
        runs: dict[str, list[dict]] = {}
        faces = [
            ("this serve", ROOT, "serve"),
            ("baseline serve", args.baseline, "serve-snapshot"),
            ("this app", ROOT, "app"),
            ("baseline app", args.baseline, "app"),
        ]
        wanted = set(args.faces.split(","))
        faces = [f for f in faces if f[0] in wanted]
        for r in range(args.rounds):
            for label, code, face in faces:
                res = launch(code, xdg, db, qfile, face, spec, args.warm)
                runs.setdefault(label, []).append(res)
                ms = [t * 1000 for t in res["times"]]
                print(
                    f"  launch {r + 1} {label}: first answer {res['first_s']:.2f} s, warm p50 "
                    f"{percentile(ms, 50):.1f} ms, at rest {res['rss_mb']:.0f} MB (peak "
                    f"{res['peak_mb']:.0f}), snapshots {res['snapshots']}, chromadb "
                    f"{res['chromadb']}",
                    flush=True,
                )
        figures["launch"] = runs
    if "catch-up" in parts:
        readers = [
            ("this serve", ROOT, "serve"),
            ("baseline serve", args.baseline, "serve-snapshot"),
            ("baseline app", args.baseline, "app"),
        ]
        figures["catch_up"] = catch_up(readers, db, qfile, xdg, args.rounds, args.add, args.centres)
    print(f"\nn = {n:,}")
    for label, got in figures.get("launch", {}).items():
        ms = [t * 1000 for r in got for t in r["times"]]
        print(
            f"  {label:>15}: first answer {statistics.median(r['first_s'] for r in got):.2f} s "
            f"(runs {_runs([r['first_s'] for r in got])}), warm p50 "
            f"{percentile(ms, 50):.1f} ms / p95 {percentile(ms, 95):.1f} ms, at rest "
            f"{statistics.median(r['rss_mb'] for r in got):.0f} MB, peak "
            f"{max(r['peak_mb'] for r in got):.0f} MB"
        )
    for label, got in figures.get("catch_up", {}).items():
        print(
            f"  {label:>15}: a commit of {args.add}: caught up in "
            f"{statistics.median(r['catch_up_s'] for r in got) * 1000:.1f} ms (runs "
            f"{_runs([r['catch_up_s'] * 1000 for r in got], '.1f')} ms), seen after "
            f"{statistics.median(r['s'] for r in got) * 1000:.0f} ms (runs "
            f"{_runs([r['s'] * 1000 for r in got], '.0f')} ms), RSS after "
            f"{statistics.median(r['rss_mb'] for r in got):.0f} MB, all found "
            f"{all(r['found'] for r in got)}"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
