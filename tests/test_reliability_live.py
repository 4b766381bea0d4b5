"""One index, many processes: readers never write, see writers' changes, and never fail.

Real processes where it matters (``clipseek index`` killed at random moments, ``clipseek
serve``, ``clipseek query``); the store-level tests use random vectors and no model.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from clipseek.errors import StoreError
from clipseek.models import resolve_model
from clipseek.store import Record, Store
from clipseek.store.snapshot import GENERATION_NAME
from tests.support.files import tree_snapshot
from tests.support.processes import Proc, cli_env
from tests.support.servers import free_port
from tests.support.waiting import wait_until, wait_until_async

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and mounts")


def _records(paths: list[str], dim: int = 16, seed: int = 0) -> list[Record]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(len(paths), dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # as clipseek writes them
    return [
        Record(
            path=p,
            embedding=vectors[i],
            size=1,
            mtime_ns=1,
            width=1,
            height=1,
        )
        for i, p in enumerate(paths)
    ]


def _vector_index(db: Path, paths: list[str], dim: int = 16):
    writer = Store(db)
    index = writer.create_index("k", "k", "slug", dim)
    records = _records(paths, dim)
    for start in range(0, len(records), 64):
        index.upsert(records[start : start + 64])
    return writer, index, records


# --------------------------------------------------------------------------- large top-k


def test_large_top_k_is_complete_and_a_short_answer_is_not_damage(tmp_path, monkeypatch):
    paths = [f"/photos/{'a' if i % 3 else 'b'}/{i:04d}.jpg" for i in range(300)]
    _, _, records = _vector_index(tmp_path / "db", paths)
    reader = Store(tmp_path / "db", reader=True)
    index = reader.open_index("k", "slug")
    assert index is not None
    query = np.ones(16, np.float32)
    assert len(index.query(query, 1000)) == 300
    in_b = sum(1 for p in paths if "/b/" in p)
    assert len(index.query(query, 1000, under="/photos/b")) == in_b

    # An approximate index that answers short (as HNSW may for a large k) is completed by
    # an exact scan, in exact order, and nobody calls the index damaged.
    real_query = index._col.query

    def short(**kwargs):
        res = real_query(**kwargs)
        return {k: [v[0][:7]] if v else v for k, v in res.items()}

    monkeypatch.setattr(index._col, "query", short)
    hits = index.query(query, 1000)
    matrix = np.stack([r.embedding for r in records])
    scores = matrix @ (query / np.linalg.norm(query)) / np.linalg.norm(matrix, axis=1)
    assert [h.path for h in hits] == [paths[i] for i in np.argsort(-scores, kind="stable")]
    assert len(index.query(query, 50, under="/photos/b")) == min(50, in_b)
    assert len(index.query(query, 5)) == 5


# --------------------------------------------------------------------------- readers follow


def test_a_reader_follows_another_writer_and_never_writes(tmp_path):
    db = tmp_path / "db"
    paths = [f"/photos/{i:04d}.jpg" for i in range(100)]
    _writer, windex, _ = _vector_index(db, paths)
    before = tree_snapshot(db)
    reader = Store(db, reader=True)
    rindex = reader.open_index("k", "slug")
    assert rindex is not None and rindex.count() == 100
    assert tree_snapshot(db) == before, "opening and counting wrote the index"

    windex.upsert(_records([f"/photos/new{i}.jpg" for i in range(20)], seed=1))
    windex.delete([next(iter(windex.entries()))])
    assert (db / GENERATION_NAME).exists()
    assert reader.changed()
    wait_until(
        lambda: reader.open_index("k", "slug").count() == 119,
        timeout=5,
        interval=0.1,
        what="the reader to count the writer's 119 entries",
    )
    hits = reader.open_index("k", "slug").query(np.ones(16, np.float32), 500)
    assert len(hits) == 119 and sum("/new" in h.path for h in hits) == 20
    assert reader.reloads >= 1
    after_write = tree_snapshot(db)
    reader.open_index("k", "slug").query(np.ones(16, np.float32), 5, under="/photos")
    assert tree_snapshot(db) == after_write
    reader.close()


# --------------------------------------------------------------------------- disk full


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB tmpfs (needs root and the right to mount), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_is_named_and_queries_keep_working(small_disk):
    db = small_disk / "db"
    paths = [f"/photos/{i:04d}.jpg" for i in range(200)]
    _, windex, _ = _vector_index(db, paths, dim=64)
    fd = os.open(small_disk / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for chunk in (1 << 20, 4096):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)
    assert shutil.disk_usage(small_disk).free < (1 << 20)

    reader = Store(db, reader=True)
    index = reader.open_index("k", "slug")
    assert index is not None and len(index.query(np.ones(64, np.float32), 1000)) == 200

    with pytest.raises(StoreError) as caught:
        for start in range(0, 3000, 100):
            windex.upsert(_records([f"/more/{i}.jpg" for i in range(start, start + 100)], 64))
    message = str(caught.value)
    assert f"The disk holding the index at {db} is full" in message
    assert " free" in message and "Free some space" in message
    assert "rebuild" not in message

    again = Store(db, reader=True).open_index("k", "slug")
    assert again is not None and len(again.query(np.ones(64, np.float32), 5)) == 5
    assert len(index.query(np.ones(64, np.float32), 5, under="/photos")) == 5


# --------------------------------------------------------------------------- real processes


def _tree(root: Path, start: int, count: int) -> None:
    from PIL import Image

    for i in range(start, start + count):
        path = root / f"album{i % 3}" / f"img{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        colour = ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)
        image = Image.new("RGB", (24, 24), colour)
        image.putpixel((i % 24, (i // 24) % 24), (255 - colour[0], 0, 0))
        image.save(path)


def _run(args: list[str], env: dict[str, str], timeout: float = 240) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "clipseek", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_query_and_serve_leave_the_index_byte_identical_and_read_only_copies_answer(
    tmp_path, tiny_model
):
    photos, db = tmp_path / "photos", tmp_path / "db"
    _tree(photos, 0, 30)
    env = cli_env(tmp_path, tiny_model, db)
    _run(["index", str(photos), "--batch-size", "8"], env)
    before = tree_snapshot(db)
    out = _run(["query", "a red square", "--top-k", "100", "--json"], env)
    assert out.count('"rank"') == 30
    _run(["query", "a red square", "--in", str(photos / "album1")], env)
    _run(["info"], env)
    assert tree_snapshot(db) == before, "a query wrote the index"

    # A read-only copy of the index answers queries.
    copy = tmp_path / "copy"
    shutil.copytree(db, copy)
    read_only = tmp_path / "ro"
    read_only.mkdir()
    mounted = False
    if os.geteuid() == 0:  # root ignores permission bits: a read-only bind mount instead
        bind = subprocess.run(["mount", "--bind", str(copy), str(read_only)], capture_output=True)
        if bind.returncode == 0:
            mounted = True
            ro = subprocess.run(
                ["mount", "-o", "remount,bind,ro", str(read_only)], capture_output=True
            )
            if ro.returncode != 0:
                subprocess.run(["umount", str(read_only)], capture_output=True)
                pytest.skip("cannot remount read-only here")
        else:
            pytest.skip("cannot make a read-only bind mount here")
    else:
        read_only.rmdir()
        copy.rename(read_only)
        for dirpath, _, files in os.walk(read_only):
            for name in files:
                os.chmod(os.path.join(dirpath, name), 0o444)
            os.chmod(dirpath, 0o555)
    try:
        with pytest.raises(OSError):
            (read_only / "probe").write_text("x")
        ro_env = {**env, "CLIPSEEK_DB": str(read_only)}
        out = _run(["query", "a red square", "--top-k", "5", "--json"], ro_env)
        assert out.count('"rank"') == 5
    finally:
        if mounted:
            subprocess.run(["umount", str(read_only)], capture_output=True)
        else:
            for dirpath, _, _ in os.walk(read_only):
                os.chmod(dirpath, 0o755)


class Readers:
    """A ``clipseek serve`` process searched over HTTP (with and without ``in``) and a
    reader store in this process, both querying until stopped; every failure is kept."""

    def __init__(self, port: int, db: Path, photos: Path) -> None:
        import httpx

        self.httpx = httpx
        self.url = f"http://127.0.0.1:{port}"
        self.db, self.photos = db, photos
        self.errors: list[str] = []
        self.requests = 0
        self.slowest = 0.0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._http, daemon=True),
            threading.Thread(target=self._store, daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _http(self) -> None:
        client = self.httpx.Client(trust_env=False, timeout=60)
        rng = random.Random(1)
        while not self._stop.is_set():
            body: dict[str, object] = {"query": "a coloured square", "top_k": rng.choice([3, 200])}
            if rng.random() < 0.5:
                body["in"] = str(self.photos / f"album{rng.randrange(3)}")
            started = time.monotonic()
            try:
                r = client.post(f"{self.url}/search", json=body)
                if r.status_code != 200:
                    self.errors.append(f"HTTP {r.status_code} for {body}: {r.text[:300]}")
            except self.httpx.HTTPError as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.requests += 1
            time.sleep(0.02)

    def _store(self) -> None:
        store = Store(self.db, reader=True)
        rng = np.random.default_rng(2)
        while not self._stop.is_set():
            try:
                spec_index = store.indexes()
                if spec_index:
                    index = store.open_index(spec_index[0].model_key, _slug(spec_index[0]))
                    if index is not None:
                        vector = rng.normal(size=index.dim).astype(np.float32)
                        index.query(vector, 500)
                        index.query(vector, 5, under=str(self.photos / "album0"))
            except Exception as exc:  # any failure is what the test looks for
                self.errors.append(f"reader: {type(exc).__name__}: {exc}")
            self.requests += 1
            time.sleep(0.05)
        store.close()


def _slug(info) -> str:
    from clipseek.store import COLLECTION_PREFIX

    return info.collection[len(COLLECTION_PREFIX) :]


def _change(photos: Path, rng: random.Random, next_id: int) -> int:
    """Add a few images, edit two, delete two: what a photo folder sees between runs."""
    from PIL import Image

    _tree(photos, next_id, 6)
    existing = sorted(photos.rglob("*.png"))
    for path in rng.sample(existing, 2):
        Image.new("RGB", (20, 20), tuple(rng.randrange(256) for _ in range(3))).save(path)
    for path in rng.sample(sorted(photos.rglob("*.png")), 2):
        path.unlink()
    return next_id + 6


def _wait_for_writer(proc: Proc, db: Path, timeout: float = 120.0) -> None:
    """Until ``proc`` holds the writer lock (it is about to write), or has exited."""
    from clipseek.store.lock import WriterLock

    lock = WriterLock(db)

    def writing_or_gone() -> bool:
        holder = lock.holder()
        return proc.popen.poll() is not None or (holder is not None and holder.pid == proc.pid)

    wait_until(writing_or_gone, timeout=timeout, interval=0.05, what="the writer to take the lock")


@pytest.mark.slow
def test_stress_index_killed_at_random_while_serve_and_a_reader_query(tmp_path, tiny_model):
    """N cycles of change files → ``clipseek index`` → SIGKILL at a random moment, with a
    ``clipseek serve`` and a reader querying throughout. About half a minute in the suite;
    ``CLIPSEEK_STRESS_SECONDS=600`` (and ``CLIPSEEK_STRESS_SEED``) for a long hunt."""
    pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    photos, db = tmp_path / "photos", tmp_path / "db"
    _tree(photos, 0, 40)
    env = cli_env(tmp_path, tiny_model, db)
    _run(["index", str(photos), "--batch-size", "4"], env)

    port = free_port()
    server = Proc(["serve", "--port", str(port)], env)
    cycles = kills = 0
    readers = Readers(port, db, photos)
    try:
        server.wait_for("Serving on", timeout=240)
        readers.start()
        rng = random.Random(int(os.environ.get("CLIPSEEK_STRESS_SEED", "7")))
        budget = float(os.environ.get("CLIPSEEK_STRESS_SECONDS", "12"))
        started, next_id = time.monotonic(), 1000
        while cycles < 2 or time.monotonic() - started < budget:
            next_id = _change(photos, rng, next_id)
            proc = Proc(["index", str(photos), "--batch-size", "4"], env)
            if rng.random() < 0.75:  # mostly while it writes, else at any moment of start-up
                _wait_for_writer(proc, db)
                time.sleep(rng.uniform(0.0, 2.0))
            else:
                time.sleep(rng.uniform(0.2, 4.0))
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGKILL)
                kills += 1
            rc, _, err = proc.finish()
            assert rc in (0, -signal.SIGKILL), err
            cycles += 1
        _run(["index", str(photos), "--batch-size", "4"], env)
        written = tree_snapshot(db)
        time.sleep(2.5)  # readers reload and keep querying; none of them may write
        assert tree_snapshot(db) == written, "a reader wrote the index"

        # The server sees the final state: its count, and every image for a large top_k.
        import httpx

        files = {str(p) for p in photos.rglob("*.png")}
        health = httpx.get(f"http://127.0.0.1:{port}/", trust_env=False, timeout=30).json()
        assert health["indexed_images"] == len(files)
        r = httpx.post(
            f"http://127.0.0.1:{port}/search",
            json={"query": "a square", "top_k": 200},
            trust_env=False,
            timeout=60,
        )
        assert r.status_code == 200, r.text
        assert len(files) <= 200
        assert {hit["path"] for hit in r.json()["results"]} == files
    finally:
        readers.stop()
        print(
            f"\nstress: {cycles} cycles, {kills} killed, {readers.requests} reader requests, "
            f"{len(readers.errors)} errors, slowest request {readers.slowest:.2f} s"
        )
        server.popen.send_signal(signal.SIGINT)
        try:
            server.finish(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    assert readers.errors == [], readers.errors[:5]
    assert "Traceback" not in server.stderr, server.stderr[-2000:]

    # The index equals the files on disk, and every vector finds itself.
    spec = resolve_model(tiny_model)
    index = Store(db).open_index(spec.key, spec.collection_slug)
    entries = index.entries()
    assert sorted(e.path for e in entries.values()) == sorted(files)
    stored = index.get(list(entries))
    for id_, (vector, _) in stored.items():
        assert index.query(vector, 1)[0].id == id_ or index.query(vector, 1)[0].score > 0.9999


# --------------------------------------------------------------------------- the app


@pytest.mark.slow  # several seconds of CPU
@pytest.mark.parametrize("first_reader", ["watcher", "another request"])
def test_the_app_follows_another_process_index_run(
    tmp_path, tiny_model_dir, loaded_tiny_model, first_reader
):
    """The app's "N images" and the results on screen update after another process indexes,
    also when a request other than the app's watcher was the first to read the new data."""
    pytest.importorskip("textual")
    import asyncio

    from clipseek.config import Settings
    from clipseek.engine import Engine
    from clipseek.tui.app import ClipseekApp

    photos, db = tmp_path / "photos", tmp_path / "db"
    _tree(photos / "one", 0, 6)
    settings = Settings(
        db=db, model=f"local-dir:{tiny_model_dir}", device="cpu", precision="fp32", sources={}
    )
    Engine(settings, model_loader=lambda *_: loaded_tiny_model).index([photos])
    app = ClipseekApp(
        engine=Engine(settings, model_loader=lambda *_: loaded_tiny_model), preview="halfcell"
    )

    def shown() -> set[str]:
        from clipseek.tui.widgets.results import ResultsList

        results = app.search_screen.query_one("#results", ResultsList)
        return {r.path for r in results.results} if results.display else set()

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until_async(lambda: app.model_ready and app.index_count == 6)
            from clipseek.tui.widgets.topk import TopKInput

            app.search_screen.query_one(TopKInput).set_count(50, announce=False)
            app.search_screen.search("a coloured square")
            await wait_until_async(lambda: len(shown()) == 6)
            # Another process (here: another engine's writer store, on the folder itself).
            _tree(photos / "two", 100, 4)
            other = Engine(settings, model_loader=lambda *_: loaded_tiny_model)
            await asyncio.to_thread(other.index, [photos])
            if first_reader == "another request":  # it takes the newer snapshot first
                assert await asyncio.to_thread(lambda: app.engine.open_index().count()) == 10
                assert not app.engine.store.changed()
            await wait_until_async(lambda: app.index_count == 10)
            await wait_until_async(lambda: len(shown()) == 10)
            await pilot.pause()

    asyncio.run(scenario())
