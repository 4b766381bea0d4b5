"""Real processes: Ctrl-C, SIGKILL at several points, and concurrent writers and readers.

Each test runs ``python -m clipseek`` as a user would, with its own HOME and index, and
then checks the index against the files on disk. They take tens of seconds, mostly
process start-up (torch, chromadb), so they share one photo tree per test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from clipseek.config import Settings
from clipseek.engine import Engine
from clipseek.models import resolve_model
from clipseek.store import Store
from tests.support.processes import Proc, cli_env, running
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
]


def make_tree(root: Path, count: int, start: int = 0) -> list[Path]:
    """``count`` tiny distinct PNGs spread over a few folders."""
    out = []
    for i in range(start, start + count):
        path = root / f"album{i % 4}" / f"img{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        colour = ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)
        image = Image.new("RGB", (24, 24), colour)
        image.putpixel((i % 24, (i // 24) % 24), (255 - colour[0], 0, 0))
        image.save(path)
        out.append(path)
    return out


def on_disk(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*.png") if p.is_file()}


def index_state(db: Path, model: str) -> tuple[list[str], dict[str, int], set[str]]:
    """(stored paths with repeats, mtime per path, paths remembered as unreadable)."""
    spec = resolve_model(model)
    index = Store(db).open_index(spec.key, spec.collection_slug)
    assert index is not None
    entries = index.entries()
    paths = [e.path for e in entries.values()]
    assert index.count() == len(entries)
    return (
        paths,
        {e.path: e.mtime_ns for e in entries.values()},
        set(e.path for e in index.failures().values()),
    )


def wait_for_lock(proc: Proc, db: Path, timeout: float = 120.0) -> None:
    """Block until ``proc`` holds the writer lock (its pid is in the lock file)."""
    from clipseek.store.lock import WriterLock

    lock = WriterLock(db)

    def holds_it() -> bool:
        assert proc.popen.poll() is None, proc.stderr
        holder = lock.holder()
        return holder is not None and holder.pid == proc.pid

    wait_until(holds_it, timeout=timeout, interval=0.05, what="the writer to take the lock")


def kill_after(proc: Proc, text: str, count: int = 1) -> bool:
    """SIGKILL the process once ``text`` has appeared ``count`` times; False if it finished
    first (the consistency checks hold either way)."""
    try:
        proc.wait_for(text, count=count)
    except AssertionError:
        if proc.popen.poll() is None:
            raise
        proc.finish()
        return False
    proc.popen.send_signal(signal.SIGKILL)
    rc, _, _ = proc.finish()
    assert rc == -signal.SIGKILL
    return True


def test_ctrl_c_and_sigkill_then_rerun_leave_exactly_the_files_on_disk(
    tmp_path: Path, tiny_model: str
) -> None:
    root, db = tmp_path / "photos", tmp_path / "db"
    # Enough batches that each run is still embedding when the signal lands, also on the
    # fast path (ONNX Runtime embeds these in well under a millisecond each).
    files = make_tree(root, 320)
    (root / "album0" / "broken.png").write_text("not a picture")
    env = cli_env(tmp_path, tiny_model, db)
    args = ["index", str(root), "--batch-size", "2"]

    # Ctrl-C: stops after the batch in flight, prints the summary, exits 130.
    with running(args, env) as proc:
        proc.wait_for("embedded ")
        proc.popen.send_signal(signal.SIGINT)
        rc, out, err = proc.finish()
    assert rc == 130, err
    assert "Stopping after the current batch" in err
    stopped = re.search(r"Stopped early in [\d.]+ s.*: (\d+) new, .* (\d+) failed\.", out)
    assert stopped, out
    paths, _, _ = index_state(db, tiny_model)
    assert 0 < len(paths) == int(stopped.group(1)) < len(files)
    assert set(paths) <= on_disk(root)

    # SIGKILL while starting up (scan or model load), holding the writer lock: the runs
    # below must not be blocked by the lock of a dead process.
    with running(args, env) as proc:
        wait_for_lock(proc, db)
        proc.popen.send_signal(signal.SIGKILL)
        assert proc.finish()[0] == -signal.SIGKILL

    # The tree changes between runs: deletions (some already indexed), additions, edits.
    for path in files[::10]:
        path.unlink()
    make_tree(root, 6, start=1000)
    edited = files[1:4]
    for path in edited:
        Image.new("RGB", (30, 20), (1, 2, 3)).save(path)
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))

    # SIGKILL mid-embedding, twice, at different points.
    with running(args, env) as proc:
        assert kill_after(proc, "embedded ")
    with running(args, env) as proc:
        kill_after(proc, "embedded ", count=2)

    with running(["index", str(root)], env) as proc:
        rc, out, err = proc.finish()
    assert rc == 0, err
    assert "broken.png: a text file, not an image" in err

    paths, mtimes, failures = index_state(db, tiny_model)
    assert len(paths) == len(set(paths))  # no duplicates
    assert set(paths) == on_disk(root) - {str(root / "album0" / "broken.png")}  # nothing stale
    assert failures == {str(root / "album0" / "broken.png")}
    for path in edited:
        assert mtimes[str(path)] == path.stat().st_mtime_ns  # the new content was embedded


def test_concurrent_writers_wait_and_queries_keep_working(tmp_path: Path, tiny_model: str) -> None:
    root, db = tmp_path / "photos", tmp_path / "db"
    make_tree(root / "old", 40)
    settings = Settings(
        db=db, model=tiny_model, device="cpu", precision="fp32", sources={"model": "test"}
    )
    reader = Engine(settings)
    assert reader.index([root]).new == 40
    make_tree(root / "new", 60, start=40)
    env = cli_env(tmp_path, tiny_model, db)

    with (
        running(["index", str(root), "--batch-size", "1"], env) as writer,
        running(["query", "a colourful square", "--json", "--top-k", "5"], env) as cli_query,
    ):
        wait_for_lock(writer, db)  # held from before the scan until the run ends

        busy = subprocess.run(
            [sys.executable, "-m", "clipseek", "index", "--no-wait", str(root)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert busy.returncode == 1, busy.stderr
        assert f"(process {writer.pid} on this computer" in busy.stderr
        assert "Traceback" not in busy.stderr

        with running(["index", str(root)], env) as waiter:
            waiter.wait_for("waiting for it to finish")
            assert f"(process {writer.pid} on this computer" in waiter.stderr

            # This test process is a third one, reading while the writer writes.
            writer.wait_for("embedded ")
            reads_during_write = 0
            while writer.popen.poll() is None:
                response = reader.search("a colourful square", top_k=5)
                assert len(response.results) == 5
                reads_during_write += 1
                time.sleep(0.2)
            assert reads_during_write >= 1

            rc, out, err = writer.finish()
            assert rc == 0, err
            assert "60 new" in out
            rc, out, err = waiter.finish()
            assert rc == 0, err
            assert "0 new" in out and "100 unchanged" in out

        rc, out, err = cli_query.finish()
        assert rc == 0, err
        assert len(json.loads(out)["results"]) == 5

    paths, _, _ = index_state(db, tiny_model)
    assert len(paths) == len(set(paths)) == 100
    assert set(paths) == on_disk(root)
