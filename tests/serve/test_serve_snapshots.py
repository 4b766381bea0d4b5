"""``clipseek serve`` leaves no snapshot behind, a query sweeps those of processes that
are gone, and memory holds only snapshots that fit it (issue 25, item 8)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install '.[serve]'")
import httpx

from clipseek.store.snapshot import SNAPSHOT_PREFIX
from tests.support.engines import counting_loader
from tests.support.engines import settings_for as make_settings
from tests.support.servers import free_port, serve_env, start_serve

pytestmark = pytest.mark.slow  # servers and processes


def _snapshots(base: Path, pid: int | None = None) -> list[Path]:
    prefix = SNAPSHOT_PREFIX + (f"{pid}-" if pid is not None else "")
    return [p for p in base.iterdir() if p.name.startswith(prefix)]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_searches_without_a_snapshot_and_leaves_none(
    tmp_path, tiny_model, tiny_model_dir, loaded_tiny_model, served_photos, fast_path, stop
) -> None:
    """Issue 24: serve reads like the app, from the index files (no copy of the database,
    no HNSW graph in memory), whatever the routes it is asked; and stops cleanly."""
    from clipseek.engine import Engine

    db = tmp_path / "db"
    Engine(
        make_settings(tiny_model_dir, db), model_loader=counting_loader(loaded_tiny_model, [])
    ).index([str(served_photos / "trips")])
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    env = {**serve_env(db, tiny_model), "CLIPSEEK_SNAPSHOT_DIR": str(snaps)}
    port = free_port()
    proc = start_serve(env, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=60) as c:
            r = c.post("/search", json={"query": "a trip", "top_k": 2})
            assert r.status_code == 200 and len(r.json()["results"]) == 2
            trips = str(served_photos / "trips")
            inside = c.post("/search", json={"query": "a trip", "in": trips})
            assert inside.status_code == 200 and inside.json()["results"]
            first = r.json()["results"][0]["id"]
            assert c.get(f"/images/{first}").status_code == 200
            assert c.get(f"/thumbnails/{first}").status_code == 200
            assert c.get("/duplicates").status_code == 200
        assert _snapshots(snaps, proc.pid) == [], "serve read through a snapshot"
    finally:
        proc.send_signal(stop)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert "Stopped." in err, err
    assert _snapshots(snaps, proc.pid) == []


def test_a_query_sweeps_snapshots_of_processes_that_are_gone(
    runner, cli_env, photos: Path, tmp_path: Path, monkeypatch
) -> None:
    from clipseek.cli.app import app

    assert runner.invoke(app, ["index", str(photos)]).exit_code == 0
    snaps = tmp_path / "snaps"
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(gone.stdout)
    left = snaps / f"{SNAPSHOT_PREFIX}{dead_pid}-abc"
    (left / "x").mkdir(parents=True)
    (left / "chroma.sqlite3").write_bytes(b"0" * 1000)
    mine = snaps / f"{SNAPSHOT_PREFIX}{os.getpid()}-def"
    mine.mkdir()
    monkeypatch.setenv("CLIPSEEK_SNAPSHOT_DIR", str(snaps))
    result = runner.invoke(app, ["query", "a photo"])
    assert result.exit_code == 0, result.output
    assert not left.exists()
    assert mine.exists()  # a live process's snapshot is kept


def test_memory_holds_only_snapshots_that_fit_it(monkeypatch, tmp_path) -> None:
    import shutil
    from collections import namedtuple

    from clipseek.store import snapshot

    monkeypatch.delenv("CLIPSEEK_SNAPSHOT_DIR", raising=False)
    usage = namedtuple("usage", "total used free")
    gib = 1 << 30
    sizes = {"/dev/shm": usage(4 * gib, 0, 4 * gib)}
    monkeypatch.setattr(
        shutil, "disk_usage", lambda p: sizes.get(str(p), usage(100 * gib, 0, 100 * gib))
    )
    monkeypatch.setattr(snapshot.tempfile, "gettempdir", lambda: str(tmp_path))
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm")
    assert snapshot.snapshot_base(100 << 20) == Path("/dev/shm")
    # a snapshot that would take more than an eighth of memory goes to disk
    assert snapshot.snapshot_base(gib) == tmp_path
