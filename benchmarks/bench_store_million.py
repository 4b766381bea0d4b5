"""The store at 10k, 100k, a million images: every read path a user takes, against a baseline.

Synthetic 512-d unit vectors (clustered like photo embeddings: a few thousand centres
plus noise, with a near-copy planted every 500 records) go in through clipseek's own
``ImageIndex.upsert`` with realistic metadata (path, size, mtime, dimensions, content
hash, folder list), so the figures are clipseek's, not bare Chroma's. Then the index's
vector cache is built as an index run ends (``refresh_caches``), and each read path runs
in fresh processes, for this checkout and for ``--baseline`` (another checkout's code
over the same index files, in the same run):

- cold query: a new process opens the index as ``clipseek query`` does (the direct
  reader) and answers one query, plain and filtered to one folder; with the index files
  in the page cache, and with them evicted (``posix_fadvise(DONTNEED)`` on the index's
  files only: dropping every cache would slow the other jobs on a shared machine). The
  text encoder is not included: it costs the same whatever the library's size;
- ``clipseek check`` (``repair.check`` as the command calls it: the self-search on
  ``CHECK_SAMPLE`` vectors where the checkout has one, on every vector otherwise),
  ``clipseek duplicates`` (``find_duplicates``
  through the engine's reader), ``clipseek info`` (``Store.peek_indexes``): time and peak
  RSS of each, one process each;
- with ``--serve``: Chroma's HNSW (what ``clipseek serve`` searches): cold first query,
  warm p50/p95 over 200 queries, recall@10 against an exact scan.

    python benchmarks/bench_store_million.py --n 10000 --baseline /tmp/base
    python benchmarks/bench_store_million.py --n 100000 --baseline /tmp/base --dir /tmp/s100k
    python benchmarks/bench_store_million.py --n 100000 --dir /tmp/s100k --reuse   # no insert

``--time-limit`` stops inserting after that many seconds and measures what is in.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, cache_root, compile_sources, header, percentile

DIM = 512
CHUNK = 5000
KEY, SLUG = "bench:million", "bench-million"


@functools.lru_cache(maxsize=4)
def _means(centres: int, seed: int):
    import numpy as np

    return np.random.default_rng(seed).standard_normal((centres, DIM)).astype(np.float32)


def _base_row(i: int, centres: int, seed: int):
    import numpy as np

    rng = np.random.default_rng([seed, i])
    out = _means(centres, seed)[rng.integers(0, centres)] + 0.6 * rng.standard_normal(DIM).astype(
        np.float32
    )
    return out / np.linalg.norm(out), rng


def row_vectors(rows: Sequence[int], centres: int, seed: int = 0):
    """The synthetic corpus's rows ``rows``: each row is its own seed, so any row can be
    made alone (the tree build's stand-in model asks for rows in the order files are
    read); a row at 1 past a multiple of 500 is a near-copy (cosine ~0.99) of the row
    before it."""
    import numpy as np

    out = np.empty((len(rows), DIM), dtype=np.float32)
    for j, i in enumerate(rows):
        row, rng = _base_row(int(i), centres, seed)
        if i % 500 == 1:
            near = _base_row(int(i) - 1, centres, seed)[0]
            near = near + 0.004 * rng.standard_normal(DIM).astype(np.float32)
            row = near / np.linalg.norm(near)
        out[j] = row
    return out


def vectors(start: int, count: int, centres: int, seed: int = 0):
    """Rows ``start .. start+count`` of the synthetic corpus, the same on every call."""
    return row_vectors(range(start, start + count), centres, seed)


def record(i: int, vector):
    from clipseek.store import Record

    return Record(
        f"/photos/{2000 + i % 25}/event-{i // 500:05d}/IMG_{i:07d}.jpg",
        vector,
        2_000_000 + (i * 7919) % 3_000_000,
        1_600_000_000_000_000_000 + i * 1_000_000,
        4032,
        3024,
        extra={"content_hash": f"{i * 2654435761 % (1 << 64):016x}" * 4},
    )


def tree_path(tree: Path, i: int) -> Path:
    """Where picture ``i`` of a ``--tree`` library lives: 500 pictures an event folder, the
    event folders spread over 25 years."""
    event = i // 500
    return tree / f"{2000 + event % 25}" / f"event-{event:05d}" / f"IMG_{i:07d}.png"


def make_tree(tree: Path, first: int, count: int) -> None:
    """Pictures ``first .. first+count`` (those not there yet): each a small one-colour PNG
    whose colour is its number, which the stand-in model below reads back."""
    import io

    from PIL import Image

    made = 0
    for i in range(first, first + count):
        path = tree_path(tree, i)
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        Image.new("RGB", (16, 16), ((i >> 16) & 255, (i >> 8) & 255, i & 255)).save(buf, "PNG")
        path.write_bytes(buf.getvalue())
        made += 1
        if made % 100_000 == 0:
            print(f"  {made:,} pictures written", flush=True)


class CorpusRows:
    """The model a ``--tree`` build indexes with: the real (tiny, 512-d) model's every
    attribute, but each picture's vector is the synthetic corpus's row its colour names,
    so that the index holds photo-like clustered vectors with known near-copies, and
    recall can be measured against an exact scan of the corpus."""

    def __init__(self, inner: object, centres: int) -> None:
        self._inner = inner
        self._centres = centres

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def prepare(self, image: object) -> int:
        r, g, b = image.convert("RGB").getpixel((0, 0))  # type: ignore[attr-defined]
        return (r << 16) | (g << 8) | b

    def encode_prepared(self, items: Sequence[int]):
        return row_vectors([int(i) for i in items], self._centres)

    def encode_image(self, image: object):
        return self.encode_prepared([self.prepare(image)])[0]


def tiny_model(folder: Path) -> Path:
    """A random open_clip model with 512-d embeddings and a 32-pixel image tower: the
    index has a real model's key, and `clipseek index`/`query` can run on it offline."""
    from clipseek.testing import TINY_MODEL_CFG, build_tiny_model

    if not (folder / "open_clip_config.json").exists():
        build_tiny_model(folder, model_cfg={**TINY_MODEL_CFG, "embed_dim": DIM})
    return folder


def tree_settings(model: Path, store: Path):
    from clipseek.config import Settings

    return Settings(
        db=store,
        model=f"local-dir:{model}",
        device="cpu",
        precision="fp32",
        sources={"model": "flag"},
    )


def build_tree(root: Path, n: int, centres: int) -> dict:
    """A library of ``n`` real files indexed through ``Engine.index`` (the whole pipeline:
    scan, fingerprint, decode, write, vector cache), with :class:`CorpusRows` as the model."""
    from clipseek.engine import Engine
    from clipseek.indexing.events import IndexFinished
    from clipseek.indexing.options import IndexOptions
    from clipseek.models.runtime import load_index_model

    tree, store = root / "photos", root / "store"
    model = tiny_model(root / "model")
    t = time.perf_counter()
    make_tree(tree, 0, n)
    files_s = time.perf_counter() - t

    def loader(spec, device, precision):
        return CorpusRows(load_index_model(spec, device, precision, "torch"), centres)

    engine = Engine(tree_settings(model, store), model_loader=loader)
    last = [time.perf_counter(), 0]

    def on_event(event) -> None:
        done = getattr(event, "done", None)
        if isinstance(done, int) and done - last[1] >= 100_000:
            now = time.perf_counter()
            print(f"  {done:>9,} indexed ({(done - last[1]) / (now - last[0]):,.0f}/s)", flush=True)
            last[:] = [now, done]
        if isinstance(event, IndexFinished):
            print(f"  index run over: {event.summary}", flush=True)

    # Large batches written behind the stand-in model (instant): the build is Chroma's
    # writes, and they take large batches best.
    options = IndexOptions(batch_size=512, write_behind=True)
    t = time.perf_counter()
    summary = engine.index([tree], options, on_event=on_event)
    index_s = time.perf_counter() - t
    return {
        "n": summary.total,
        "files_s": files_s,
        "insert_s": index_s,
        "insert_per_s": summary.total / index_s,
        "write_s": summary.write_seconds,
        "cache_build_s": 0.0,
        "peak_rss_writer_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


_CLI = r"""
import atexit, sys
def _peak():
    sys.stderr.write("PEAK %d\n" % int(peak_mb()))
atexit.register(_peak)
sys.argv = ["clipseek", *sys.argv[1:]]
from clipseek.cli.entry import main
main()
"""


def cli(code: Path, *args: str) -> dict:
    """One fresh ``clipseek`` process of ``code``: wall time, peak RSS, its output."""
    env = {
        **os.environ,
        "PYTHONPATH": str(code),
        "ANONYMIZED_TELEMETRY": "False",
        "HF_HUB_OFFLINE": "1",
    }
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _PEAK + _CLI, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(code),
        timeout=3600,
    )
    wall = time.perf_counter() - t
    peak = [int(x.split()[1]) for x in out.stderr.splitlines() if x.startswith("PEAK ")]
    if out.returncode != 0 or not peak:
        raise SystemExit(
            f"clipseek {' '.join(args)} failed:\n{out.stdout[-2000:]}{out.stderr[-3000:]}"
        )
    return {"s": wall, "rss_mb": peak[-1], "stdout": out.stdout}


class _Reader:
    """A long-lived reader (what the app and ``clipseek serve`` hold), open with one answer
    given while another process writes: how long it takes to catch up with the commit."""

    def __init__(self, store_dir: Path, where: Where) -> None:
        import numpy as np

        from clipseek.store import Store

        self.store = Store(str(store_dir), reader=True, direct=True, approximate=True)
        self.index = self.store.open_index(where.key, where.slug)
        self.query = np.ones(DIM, dtype=np.float32) / DIM**0.5
        self.index.query(self.query, 10)
        self.count = self.index.count()

    def catch_up(self, added: int) -> dict:
        t = time.perf_counter()
        self.store.catch_up()
        caught = time.perf_counter() - t
        t = time.perf_counter()
        self.index.query(self.query, 10)
        return {
            "catch_up_s": caught,
            "search_after_s": time.perf_counter() - t,
            "catch_up_sees_all": self.index.count() == self.count + added,
        }


def tree_runs(codes: list[tuple[str, Path]], root: Path, n: int, repeat: int, where: Where) -> dict:
    """What a user times on the library as files: `clipseek query` (fresh process, the
    text encoded by the ONNX export), `clipseek index` of the unchanged tree, and of the
    tree with 1,000 new pictures (the same 1,000 indexed into an empty store alone is the
    model's share), for each checkout in turn."""
    tree, store, model = root / "photos", root / "store", root / "model"
    common = ["--model", f"local-dir:{model}", "--db", str(store)]
    query = ["query", "a red square", "--top-k", "10", "--json", *common]
    cli(ROOT, *query)  # the ONNX export, made once (a later query never imports torch)
    out: dict = {label: {"cli_query_s": [], "unchanged_s": [], "added_s": []} for label, _ in codes}
    for _ in range(repeat):
        for label, code in codes:
            got = out[label]
            r = cli(code, *query)
            got["cli_query_s"].append(r["s"])
            got["cli_query_rss_mb"] = max(got.get("cli_query_rss_mb", 0), r["rss_mb"])
            r = cli(code, "index", str(tree), *common)
            got["unchanged_s"].append(r["s"])
            got["unchanged_rss_mb"] = max(got.get("unchanged_rss_mb", 0), r["rss_mb"])
    added = root / "added"
    for label, code in codes:
        shutil.rmtree(added, ignore_errors=True)
        make_tree(added, n, 1000)
        alone = root / f"alone-{label}"
        shutil.rmtree(alone, ignore_errors=True)
        r = cli(code, "index", str(added), "--model", f"local-dir:{model}", "--db", str(alone))
        out[label]["model_alone_s"] = r["s"]
        shutil.rmtree(alone, ignore_errors=True)
        moved = tree / "added"
        added.rename(moved)
        reader = _Reader(store, where) if code == ROOT else None  # this process's code
        r = cli(code, "index", str(tree), *common)
        out[label]["added_s"] = [r["s"]]
        out[label]["added_rss_mb"] = r["rss_mb"]
        if reader is not None:
            out[label].update(reader.catch_up(1000))
        shutil.rmtree(moved)
        cli(code, "index", str(tree), *common)  # the library as it was
    return out


def queries(count: int, n: int, centres: int):
    """Query vectors near stored ones (a photo's text or image query lands near a cluster)."""
    import numpy as np

    rng = np.random.default_rng(99)
    rows = rng.integers(0, n, count)
    out = []
    for row in rows:
        start = int(row) - int(row) % CHUNK  # the same chunks as inserted
        base = vectors(start, min(CHUNK, n - start), centres)[int(row) - start]
        noise = rng.standard_normal(DIM).astype(np.float32)
        q = base + 0.5 * noise / np.linalg.norm(noise)
        out.append(q / np.linalg.norm(q))
    return np.stack(out).astype(np.float32)


def exact_top(qs, n: int, centres: int, k: int = 10):
    """Exact cosine top-k of every query over all ``n`` vectors, chunk by chunk."""
    import numpy as np

    best_scores = np.full((len(qs), k), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(qs), k), dtype=np.int64)
    for start in range(0, n, CHUNK):
        block = vectors(start, min(CHUNK, n - start), centres)
        scores = qs @ block.T
        ids = np.arange(start, start + len(block))[None, :].repeat(len(qs), 0)
        scores = np.concatenate([best_scores, scores], axis=1)
        ids = np.concatenate([best_ids, ids], axis=1)
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        best_scores = np.take_along_axis(scores, top, 1)
        best_ids = np.take_along_axis(ids, top, 1)
    return [set(row.tolist()) for row in best_ids]


def approximate_serve(folder: Path, qfile: Path, qs, n: int, centres: int) -> dict:
    """``--approximate``: what the app and ``clipseek serve`` search (issue 24): the direct
    reader with ``approximate=True`` over the vector cache's partition (built first, as an
    index run ends, whatever the size): cold first query, warm p50/p95, recall@10 against
    an exact scan, memory at rest after the searches (VmRSS) and at peak. No text encoder."""
    import numpy as np

    from clipseek.store import Store
    from clipseek.store.cache_build import refresh_caches
    from clipseek.store.records import COLLECTION_PREFIX

    start = time.perf_counter()
    refresh_caches(folder, partition_min=1)
    built = time.perf_counter() - start
    (info,) = Store(str(folder), reader=True).peek_indexes() or []
    slug = info.collection.removeprefix(COLLECTION_PREFIX)
    script = r"""
import json, sys, time
import numpy as np
start = time.perf_counter()
from clipseek.store import Store
store = Store(sys.argv[1], reader=True, direct=True, approximate=True)
index = store.open_index(sys.argv[3], sys.argv[4])
qs = np.load(sys.argv[2])
index.query(qs[0], 10)
cold = time.perf_counter() - start
times, found, used = [], [], 0
for q in qs:
    t = time.perf_counter()
    hits = index.query(q, 10)
    times.append(time.perf_counter() - t)
    used += index.from_partition
    found.append([h.path for h in hits])
rest = [int(x.split()[1]) / 1024 for x in open("/proc/self/status") if x.startswith("VmRSS:")]
print("RESULT " + json.dumps({"cold_s": cold, "times": times, "found": found, "used": used,
    "rest_mb": rest[0], "rss_mb": peak_mb()}))
"""
    res = child(ROOT, script, str(folder), str(qfile), info.model_key, slug)
    truth = exact_top(qs, n, centres)
    found = [[_number(p) for p in f] for f in res["found"]]
    times_ms = [t * 1000 for t in res["times"]]
    out = {
        "partition_build_s": built,
        "cold_first_query_s": res["cold_s"],
        "warm_p50_ms": percentile(times_ms, 50),
        "warm_p95_ms": percentile(times_ms, 95),
        "recall_at_10": float(
            np.mean([len(set(f) & t) / 10 for f, t in zip(found, truth, strict=True)])
        ),
        "from_partition": res["used"],
        "rest_mb": res["rest_mb"],
        "rss_mb": res["rss_mb"],
    }
    print(
        f"  approximate (the app, serve): partition built in {built:.1f} s; cold first "
        f"{out['cold_first_query_s']:.2f} s, warm p50 {out['warm_p50_ms']:.1f} ms / p95 "
        f"{out['warm_p95_ms']:.1f} ms, recall@10 {out['recall_at_10']:.3f} ({res['used']}/"
        f"{len(qs)} from the partition), {out['rest_mb']:,.0f} MB at rest, peak "
        f"{out['rss_mb']:,.0f} MB",
        flush=True,
    )
    return out


def _number(path: str) -> int:
    return int(path.rsplit("_", 1)[1].split(".")[0])


# Each child prints one line: RESULT {json}. ``rss_mb`` is the child's own peak (VmHWM:
# ru_maxrss would count the parent's memory at the fork, before the child's exec).
_PEAK = r"""
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

_COLD = r"""
import json, resource, sys, time
start = time.perf_counter()
import numpy as np
from clipseek.store import Store
store = Store(sys.argv[1], reader=True, direct=True)
index = store.open_index(sys.argv[3], sys.argv[4])
q = np.load(sys.argv[2])[int(sys.argv[5])]
hits = index.query(q, 10)
cold = time.perf_counter() - start
t = time.perf_counter()
inside = index.query(q, 10, under=sys.argv[6])
filtered = time.perf_counter() - t
print("RESULT " + json.dumps({
    "s": cold, "filtered_s": filtered,
    "paths": [h.path for h in hits], "inside": [h.path for h in inside],
    "from_cache": getattr(index, "from_cache", None),
    "rss_mb": peak_mb(),
}))
"""

_CHECK = r"""
import json, resource, sys, time
start = time.perf_counter()
from clipseek.store import Store
from clipseek.store import repair
# What `clipseek check` does in each checkout: a sample where there is one, else everything.
sample = getattr(repair, "CHECK_SAMPLE", None)
report = repair.check(Store(sys.argv[1], create=False), sample=sample)
print("RESULT " + json.dumps({
    "s": time.perf_counter() - start, "healthy": report.healthy, "problems": report.problems,
    "found_self": report.found_self, "records": report.records, "sample": sample,
    "rss_mb": peak_mb(),
}))
"""

_DUPLICATES = r"""
import json, resource, sys, time
start = time.perf_counter()
from clipseek.store import Store
from clipseek.search.duplicates import find_duplicates
index = Store(sys.argv[1], reader=True, direct=True).open_index(sys.argv[3], sys.argv[4])
groups = find_duplicates(index, 0.95)
print("RESULT " + json.dumps({
    "s": time.perf_counter() - start, "groups": len(groups),
    "largest": max((len(g.items) for g in groups), default=0),
    "from_cache": getattr(index, "from_cache", None),
    "rss_mb": peak_mb(),
}))
"""

_INFO = r"""
import json, resource, sys, time
start = time.perf_counter()
from clipseek.store import Store
infos = Store(sys.argv[1], reader=True).peek_indexes()
print("RESULT " + json.dumps({
    "s": time.perf_counter() - start, "count": sum(i.count for i in infos or []),
    "rss_mb": peak_mb(),
}))
"""

_SERVE = r"""
import json, resource, sys, time
import numpy as np
start = time.perf_counter()
from clipseek.store import Store
store = Store(sys.argv[1], reader=True)
index = store.open_index(sys.argv[3], sys.argv[4])
qs = np.load(sys.argv[2])
first = index.query(qs[0], 10)
cold = time.perf_counter() - start
hnsw = (getattr(index._col, "configuration", None) or {}).get("hnsw") or {}
times, found = [], []
for q in qs:
    t = time.perf_counter()
    hits = index.query(q, 10)
    times.append(time.perf_counter() - t)
    found.append([h.path for h in hits])
print("RESULT " + json.dumps({
    "cold_s": cold, "times": times, "found": found, "rss_mb": peak_mb(),
    "hnsw": {k: hnsw.get(k) for k in ("space", "ef_construction", "ef_search", "max_neighbors")},
}))
"""


@dataclass(frozen=True)
class Where:
    """The index the children open, and the folder a filtered query keeps to."""

    key: str = KEY
    slug: str = SLUG
    year: str = "/photos/2003"


def child(code: Path, script: str, *args: str, timeout: float = 3600, prelude: str = _PEAK) -> dict:
    """Run ``prelude + script`` in a fresh process of ``code``; its last RESULT line."""
    env = {**os.environ, "PYTHONPATH": str(code), "ANONYMIZED_TELEMETRY": "False"}
    out = subprocess.run(
        [sys.executable, "-c", prelude + script, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=str(code),
    )
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"child failed in {code}:\n{out.stdout[-2000:]}{out.stderr[-4000:]}")
    return json.loads(lines[-1][7:])


def evict(folder: Path) -> None:
    """Drop the index's files from the page cache (only those: the machine is shared)."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def build(folder: Path, n: int, centres: int, time_limit: float | None) -> dict:
    from clipseek.store import Store, find_damage
    from clipseek.store.cache_build import refresh_caches
    from clipseek.store.chroma import HNSW_CONFIG

    shutil.rmtree(folder, ignore_errors=True)
    store = Store(str(folder))
    index = store.create_index(KEY, "bench", SLUG, DIM)
    print(f"HNSW settings: {json.dumps(HNSW_CONFIG)}; write chunk {index._max_batch()}", flush=True)
    start = time.perf_counter()
    inserted, checkpoint, at_checkpoint = 0, start, 0
    for first in range(0, n, CHUNK):
        block = vectors(first, min(CHUNK, n - first), centres)
        index.upsert([record(first + j, v) for j, v in enumerate(block)])
        inserted = first + len(block)
        if inserted % 100_000 == 0 or inserted == n:
            now = time.perf_counter()
            rate = (inserted - at_checkpoint) / max(now - checkpoint, 1e-9)
            print(f"  {inserted:>9,} in {now - start:7.1f} s (last {rate:,.0f}/s)", flush=True)
            checkpoint, at_checkpoint = now, inserted
        if time_limit and time.perf_counter() - start > time_limit:
            print(f"  time limit: stopping at {inserted:,}", flush=True)
            break
    insert_s = time.perf_counter() - start
    store.close()
    t = time.perf_counter()
    refresh_caches(folder)  # what the end of an index run does
    cache_s = time.perf_counter() - t
    find_damage(folder, notes="keep")  # so does this: readers skip the links it checked
    return {
        "n": inserted,
        "insert_s": insert_s,
        "insert_per_s": inserted / insert_s,
        "cache_build_s": cache_s,
        "peak_rss_writer_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def cold_queries(
    codes: list[tuple[str, Path]], folder: Path, qfile: Path, repeat: int, where: Where
) -> dict:
    """Cold queries of every checkout, taking turns (this, baseline, this, ...), so a
    change in the machine's load falls on both alike."""
    db = str(folder)
    runs: dict[str, dict[str, list]] = {label: {"warm": [], "dropped": []} for label, _ in codes}
    for i in range(repeat):
        for label, code in codes:
            args = (db, str(qfile), where.key, where.slug, str(i), where.year)
            child(code, _COLD, *args)  # files into the page cache
            runs[label]["warm"].append(child(code, _COLD, *args))
            evict(folder)
            runs[label]["dropped"].append(child(code, _COLD, *args))
    out = {}
    for label, got in runs.items():
        warm, dropped = got["warm"], got["dropped"]
        out[label] = {
            "cold_query_s": [r["s"] for r in warm],
            "cold_query_dropped_s": [r["s"] for r in dropped],
            "filtered_s": [r["filtered_s"] for r in warm],
            "cold_query_rss_mb": max(r["rss_mb"] for r in warm + dropped),
            "from_cache": warm[0]["from_cache"],
            "answers": [r["paths"] for r in warm],
            "inside": [r["inside"] for r in warm],
        }
    return out


def measure(code: Path, folder: Path, qfile: Path, skip: set[str], where: Where) -> dict:
    """``clipseek info``, ``check`` and ``duplicates`` of one checkout's code."""
    out: dict = {}
    db = str(folder)
    for name, script, wanted in (
        ("info", _INFO, True),
        ("check", _CHECK, "check" not in skip),
        ("duplicates", _DUPLICATES, "duplicates" not in skip),
    ):
        if not wanted:
            continue
        t = time.perf_counter()
        res = child(code, script, db, str(qfile), where.key, where.slug)
        res["wall_s"] = time.perf_counter() - t
        out[name] = res
        print(f"    {name}: {res['s']:.2f} s, {res['rss_mb']:,.0f} MB", flush=True)
    return out


def _indexes(folder: Path) -> list:
    from clipseek.store import Store

    return Store(str(folder), reader=True).peek_indexes() or []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--centres", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3, help="cold queries of each kind")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds of inserting")
    parser.add_argument("--dir", type=Path, default=None, help="where the store goes (kept)")
    parser.add_argument("--reuse", action="store_true", help="measure the store in --dir as is")
    parser.add_argument("--baseline", type=Path, default=None, help="a checkout to compare")
    parser.add_argument("--skip", default="", help="comma list of: check,duplicates,tree")
    parser.add_argument("--baseline-skip", default="", help="the same, for the baseline only")
    parser.add_argument("--approximate", action="store_true", help="also the partition's search")
    parser.add_argument("--serve", action="store_true", help="also Chroma's HNSW and recall")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--build-only", action="store_true", help="build --dir, measure nothing")
    parser.add_argument(
        "--tree",
        action="store_true",
        help="real files: --dir gets photos/, model/ and store/, indexed through Engine.index; "
        "adds `clipseek query`, unchanged and +1,000-file `clipseek index` runs",
    )
    args = parser.parse_args()
    args.skip = set(filter(None, args.skip.split(",")))
    baseline_skip = args.skip | set(filter(None, args.baseline_skip.split(",")))
    header(f"The store at {args.n:,} vectors ({DIM}-d), through clipseek's ImageIndex")
    import numpy as np

    root = args.dir or cache_root() / f"store-{args.n}"
    folder = root / "store" if args.tree else root
    figures: dict = {}
    if args.reuse:
        from clipseek.store import find_damage

        figures["n"] = sum(i.count for i in _indexes(folder))
        find_damage(folder, notes="keep")
    elif args.tree:
        figures.update(build_tree(root, args.n, args.centres))
    else:
        figures.update(build(folder, args.n, args.centres, args.time_limit))
        print(
            f"insert {figures['insert_per_s']:,.0f}/s ({figures['insert_s']:.0f} s); "
            f"vector cache built in {figures['cache_build_s']:.1f} s",
            flush=True,
        )
    n = figures["n"]
    if args.build_only:
        print(json.dumps(figures))
        return
    where = Where()
    if args.tree:
        from clipseek.store.records import COLLECTION_PREFIX

        (info,) = _indexes(folder)
        slug = info.collection.removeprefix(COLLECTION_PREFIX)
        where = Where(info.model_key, slug, str(root / "photos" / "2003"))
    figures["disk_mb"] = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
    qs = queries(max(args.queries, args.repeat), n, args.centres)
    qfile = cache_root() / "million-queries.npy"
    np.save(qfile, qs)

    codes = [("this", ROOT)] + ([("baseline", args.baseline)] if args.baseline else [])
    for _, code in codes:
        compile_sources(code)
    figures.update(cold_queries(codes, folder, qfile, args.repeat, where))
    for label, code in codes:
        print(f"  {label} ({code}):", flush=True)
        skip = baseline_skip if label == "baseline" else args.skip
        figures[label].update(measure(code, folder, qfile, skip, where))
    truth = exact_top(qs[: args.repeat], n, args.centres)
    for label, _ in codes:
        got = figures[label].pop("answers")
        pairs = zip(got, truth, strict=False)
        figures[label]["recall_at_10"] = float(
            np.mean([len({_number(p) for p in a} & t) / 10 for a, t in pairs])
        )
        inside = figures[label].pop("inside")
        figures[label]["filtered_all_inside"] = all(
            p.startswith(where.year + "/") for answer in inside for p in answer
        )

    if args.serve:
        res = child(ROOT, _SERVE, str(folder), str(qfile), where.key, where.slug)
        truth = exact_top(qs, n, args.centres)
        found = [[_number(p) for p in f] for f in res["found"]]
        times_ms = [t * 1000 for t in res["times"]]
        figures["serve"] = {
            "cold_first_query_s": res["cold_s"],
            "warm_p50_ms": percentile(times_ms, 50),
            "warm_p95_ms": percentile(times_ms, 95),
            "recall_at_10": float(
                np.mean([len(set(f) & t) / 10 for f, t in zip(found, truth, strict=True)])
            ),
            "rss_mb": res["rss_mb"],
        }

    if args.tree and "tree" not in args.skip:
        for label, got in tree_runs(codes, root, n, args.repeat, where).items():
            figures[label].update(got)
    print(f"\nn = {n:,}; disk {figures['disk_mb']:,.0f} MB")
    for label, _ in codes:
        f = figures[label]
        line = (
            f"  {label:>8}: cold query {statistics.median(f['cold_query_s']):.2f} s "
            f"(runs {', '.join(f'{x:.2f}' for x in f['cold_query_s'])}), files evicted "
            f"{statistics.median(f['cold_query_dropped_s']):.2f} s, filtered +"
            f"{statistics.median(f['filtered_s']) * 1000:.0f} ms, peak RSS "
            f"{f['cold_query_rss_mb']:,.0f} MB, recall@10 {f['recall_at_10']:.3f}, "
            f"cache {f['from_cache']}"
        )
        for name in ("info", "check", "duplicates"):
            if name in f:
                line += f"; {name} {f[name]['s']:.1f} s / {f[name]['rss_mb']:,.0f} MB"
        if "cli_query_s" in f:
            line += (
                f"; `clipseek query` {statistics.median(f['cli_query_s']):.2f} s / "
                f"{f['cli_query_rss_mb']:,.0f} MB; unchanged `clipseek index` "
                f"{statistics.median(f['unchanged_s']):.2f} s / {f['unchanged_rss_mb']:,.0f} MB;"
                f" +1,000 files {f['added_s'][0]:.1f} s (alone {f['model_alone_s']:.1f} s)"
            )
            if "catch_up_s" in f:
                line += (
                    f"; a reader caught up with them in {f['catch_up_s'] * 1000:.0f} ms "
                    f"(all seen: {f['catch_up_sees_all']}), then searched in "
                    f"{f['search_after_s'] * 1000:.0f} ms"
                )
        print(line)
    if "serve" in figures:
        s = figures["serve"]
        print(
            f"  serve (HNSW): cold first {s['cold_first_query_s']:.2f} s, warm p50 "
            f"{s['warm_p50_ms']:.1f} ms / p95 {s['warm_p95_ms']:.1f} ms, recall@10 "
            f"{s['recall_at_10']:.3f}, {s['rss_mb']:,.0f} MB"
        )
    if args.approximate:
        figures["approximate"] = approximate_serve(folder, qfile, qs, n, args.centres)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
