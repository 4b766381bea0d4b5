"""Clear failures instead of tracebacks, damaged databases, and the writer lock.

Most tests drive the real CLI in-process through Typer's CliRunner; the lock tests
that need a second process (a killed holder, a holder of the data lock) start one.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clipseek.cli.app import app
from clipseek.config import Settings
from clipseek.engine import Engine
from clipseek.errors import IndexBusyError, StoreError
from clipseek.indexing.events import Notice
from clipseek.store import Store
from clipseek.store.lock import WriterLock
from tests.support import REPO_ROOT
from tests.support.files import tree_snapshot
from tests.support.pictures import make_photo, png_bomb, truncate_half


def count(db: Path, model: str) -> int:
    from clipseek.models import resolve_model

    spec = resolve_model(model)
    index = Store(db).open_index(spec.key, spec.collection_slug)
    return 0 if index is None else index.count()


def assert_clear_failure(result, *needles: str) -> None:
    """Exit 1, the message on stderr in a sentence or two, and no traceback anywhere."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    error = result.stderr[result.stderr.index("error:") :]
    for needle in needles:
        assert needle in " ".join(error.split()), error
    assert error.count(". ") + error.count("; ") <= 4, error


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[Path, Path]:
    """A photo folder and a pristine index of it, built once and copied by tests that damage
    it (the photos themselves are never written: tests check that)."""
    root = tmp_path_factory.mktemp("library")
    photos = root / "photos"
    for i in range(6):
        make_photo(photos / f"p{i}.jpg", seed=i)
    make_photo(photos / "sub" / "q.png", seed=9)
    db = root / "pristine-db"
    settings = Settings(
        db=db,
        model=f"local-dir:{tiny_model_dir}",
        device="cpu",
        precision="fp32",
        sources={"model": "test"},
    )
    assert Engine(settings).index([photos]).new == 7
    return photos, db


# --------------------------------------------------------------------------- query input


def test_query_text_edge_cases(runner: CliRunner, cli_env: Path, library) -> None:
    _, pristine = library
    shutil.copytree(pristine, cli_env)

    blank = runner.invoke(app, ["query", "  \t "])
    assert_clear_failure(blank, "The query is empty")

    long_text = ("a dog running on a beach at sunset " * 300)[:10_000]
    result = runner.invoke(app, ["query", long_text, "--top-k", "3"])
    assert result.exit_code == 0, result.output
    assert "longer than CLIP's 77 tokens; only its beginning was used" in result.stderr
    assert result.stdout.count("photos/") == 3
    assert max(len(line) for line in result.stdout.splitlines()) < 400

    unicode = runner.invoke(app, ["query", "🐶 im Park · 公園で遊ぶ犬 · кошка ❤️", "--json"])
    assert unicode.exit_code == 0, unicode.output
    payload = json.loads(unicode.stdout)
    assert payload["query"] == '"🐶 im Park · 公園で遊ぶ犬 · кошка ❤️"'
    assert len(payload["results"]) == 5


def test_query_image_that_is_not_usable(
    runner: CliRunner, cli_env: Path, library, tmp_path
) -> None:
    photos, pristine = library
    shutil.copytree(pristine, cli_env)
    (tmp_path / "empty.jpg").write_bytes(b"")
    png_bomb(tmp_path / "bomb.png")
    truncate_half(make_photo(tmp_path / "half.jpg", size=(300, 200)))
    cases = {
        str(photos / "sub"): "is not a file",
        str(tmp_path / "empty.jpg"): "cannot be used: empty file (0 bytes)",
        str(tmp_path / "bomb.png"): "above the 200 MP limit",
        str(tmp_path / "half.jpg"): "cannot be used: image file is truncated",
    }
    for path, message in cases.items():
        assert_clear_failure(runner.invoke(app, ["query", "--image", path]), message)


def test_top_k_that_is_not_a_number_is_a_usage_error(runner: CliRunner, cli_env: Path) -> None:
    result = runner.invoke(app, ["query", "dog", "--top-k", "lots"])
    assert result.exit_code == 2  # click's usage-error status, as for every malformed flag
    assert "Invalid value for '--top-k'" in result.stderr and "Traceback" not in result.output


def test_names_that_are_not_utf8_print_and_round_trip(
    runner: CliRunner, cli_env: Path, tmp_path: Path
) -> None:
    root = tmp_path / "photos"
    name = os.fsdecode(b"caf\xe9 [2019] \xff.jpg")  # Latin-1 bytes, and rich markup lookalike
    make_photo(root / name, seed=1)
    make_photo(root / "plain.jpg", seed=2)
    assert runner.invoke(app, ["index", str(root)]).exit_code == 0

    table = runner.invoke(app, ["query", "a photo"])
    assert table.exit_code == 0, table.output
    assert "caf\\xe9 [2019] \\xff.jpg" in table.stdout

    as_json = runner.invoke(app, ["query", "a photo", "--json"])
    results = json.loads(as_json.stdout)["results"]
    odd = next(r for r in results if "path_b64" in r)
    raw = base64.b64decode(odd["path_b64"])
    assert raw == os.fsencode(str(root / name)) and os.path.exists(raw)
    # the JSON rule (clipseek/photos/pathtext.py): `path` loads back to the exact bytes
    assert os.fsencode(odd["path"]) == raw
    assert all("path_b64" not in r for r in results if r["path"].endswith("plain.jpg"))


# --------------------------------------------------------------------------- clear failures


def test_unknown_model_and_absent_cuda(
    runner: CliRunner, cli_env: Path, library, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos, _ = library
    unknown = runner.invoke(app, ["index", str(photos), "--model", "ViT-Q/99"])
    assert_clear_failure(unknown, "Unknown model 'ViT-Q/99'", "clipseek models")

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cuda = runner.invoke(app, ["index", str(photos), "--device", "cuda"])
    assert_clear_failure(cuda, "CUDA was requested", "--device cpu")
    assert count(cli_env, os.environ["CLIPSEEK_MODEL"]) == 0


def test_database_path_not_writable(
    runner: CliRunner, cli_env: Path, library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos, _ = library
    (tmp_path / "a-file").write_text("not a folder")
    blocked = runner.invoke(app, ["index", str(photos), "--db", str(tmp_path / "a-file" / "db")])
    assert_clear_failure(blocked, "Cannot create the index folder", "--db PATH")

    read_only = tmp_path / "read-only-db"
    read_only.mkdir()
    if os.geteuid() == 0:  # root ignores permission bits: refuse as a read-only mount would
        real_open = os.open

        def refusing_open(path, *args, **kwargs):
            if str(path).startswith(str(read_only)):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing_open)
    else:
        read_only.chmod(0o555)
    result = runner.invoke(app, ["index", str(photos), "--db", str(read_only)])
    read_only.chmod(0o755)
    assert_clear_failure(result, f"The index folder {read_only} is not writable", "--db PATH")


@pytest.mark.slow  # after a stopped run the index is checked in a child process
def test_disk_full_keeps_what_was_written(
    runner: CliRunner, cli_env: Path, library, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos, _ = library
    from chromadb.api.models.Collection import Collection

    real_upsert = Collection.upsert
    calls = {"n": 0}

    def filling_upsert(self, *args, **kwargs):
        if self.name.startswith("clipseek-"):
            calls["n"] += 1
            if calls["n"] > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_upsert(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "upsert", filling_upsert)
    full = runner.invoke(app, ["index", str(photos), "--batch-size", "3"])
    assert_clear_failure(
        full, f"The disk holding the index at {cli_env} is full", "Free some space"
    )
    assert count(cli_env, os.environ["CLIPSEEK_MODEL"]) == 3  # the first batch is kept

    monkeypatch.setattr(Collection, "upsert", real_upsert)
    resumed = runner.invoke(app, ["index", str(photos)])
    assert resumed.exit_code == 0 and "4 new" in resumed.stdout and "3 unchanged" in resumed.stdout


def test_debug_shows_tracebacks_for_failures_and_bugs(
    runner: CliRunner, cli_env: Path, library, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos, _ = library

    def broken(self, *args, **kwargs):
        raise RuntimeError("an engine bug")

    monkeypatch.setattr(Engine, "index", broken)
    plain = runner.invoke(app, ["index", str(photos)])
    assert_clear_failure(plain, "unexpected problem: RuntimeError: an engine bug", "--debug")

    debug = runner.invoke(app, ["--debug", "index", str(photos)])
    assert isinstance(debug.exception, RuntimeError)

    monkeypatch.setenv("CLIPSEEK_DEBUG", "1")
    via_env = runner.invoke(app, ["index", str(photos), "--model", "ViT-Q/99"])
    from clipseek.errors import ModelError

    assert isinstance(via_env.exception, ModelError)


# --------------------------------------------------------------------------- damaged database


def _truncate_sqlite(db: Path) -> None:
    truncate_half(db / "chroma.sqlite3")


def _delete_vector_file(db: Path) -> None:
    next(db.glob("*/header.bin")).unlink()


def _delete_sqlite(db: Path) -> None:
    (db / "chroma.sqlite3").unlink()


@pytest.mark.parametrize("damage", [_truncate_sqlite, _delete_vector_file, _delete_sqlite])
def test_damaged_database_is_named_and_rebuild_recovers_it(
    runner: CliRunner, cli_env: Path, library, damage
) -> None:
    photos, pristine = library
    before = tree_snapshot(photos)
    shutil.copytree(pristine, cli_env)
    damage(cli_env)

    # Lost records need the images; a lost vector file only `clipseek repair` (issue 25, 5).
    advice = "clipseek repair" if damage is _delete_vector_file else "clipseek index --rebuild"
    for args in (["query", "a dog"], ["index", str(photos)], ["info"]):
        result = runner.invoke(app, args, terminal_width=300)
        assert_clear_failure(result, f"The index at {cli_env} is damaged", advice)

    rebuilt = runner.invoke(app, ["index", "--rebuild", str(photos)], terminal_width=300)
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "was damaged; it was moved to" in " ".join(rebuilt.stderr.split())
    assert count(cli_env, os.environ["CLIPSEEK_MODEL"]) == 7
    assert runner.invoke(app, ["query", "a dog"]).exit_code == 0
    aside = [p for p in cli_env.parent.iterdir() if p.name.startswith(f"{cli_env.name}.damaged-")]
    assert len(aside) == 1  # kept for the curious, never deleted

    assert tree_snapshot(photos) == before  # images never modified, nothing written beside them


# --------------------------------------------------------------------------- writer lock

_HOLD = """
import sys, time
from clipseek.store.lock import {cls}
lock = {cls}(sys.argv[1])
{take}
print("locked", flush=True)
sys.stdin.readline()
with open(sys.argv[2], "w") as fh:
    fh.write("released")
"""


def _holder(db: Path, marker: Path, cls: str = "WriterLock", take: str = "lock.acquire()"):
    code = _HOLD.format(cls=cls, take=take)
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(db), str(marker)],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.slow  # a second process holds the lock
def test_no_wait_names_the_holder_and_a_killed_holder_blocks_nobody(
    runner: CliRunner, cli_env: Path, library, tmp_path: Path
) -> None:
    photos, _ = library
    holder = _holder(cli_env, tmp_path / "marker")
    try:
        busy = runner.invoke(app, ["index", "--no-wait", str(photos)], terminal_width=300)
        assert_clear_failure(
            busy, f"(process {holder.pid} on this computer", str(cli_env), "leave out --no-wait"
        )
        with pytest.raises(IndexBusyError):
            WriterLock(cli_env).acquire(wait=False)
    finally:
        holder.kill()  # SIGKILL: no chance to clean up
        holder.wait()
    assert not (tmp_path / "marker").exists()
    lock = WriterLock(cli_env)
    assert lock.acquire(wait=False)  # the kernel dropped the dead process's lock
    lock.release()
    assert runner.invoke(app, ["index", "--no-wait", str(photos)]).exit_code == 0


def test_second_writer_waits_with_a_message(engine: Engine, library) -> None:
    photos, _ = library
    first = WriterLock(engine.store.location)
    first.acquire()
    notices: list[str] = []
    waiting = threading.Event()
    result: dict[str, object] = {}

    def on_event(event: object) -> None:
        if isinstance(event, Notice):
            notices.append(event.message)
            waiting.set()

    worker = threading.Thread(
        target=lambda: result.update(summary=engine.index([photos], on_event=on_event))
    )
    worker.start()
    assert waiting.wait(60), "the second writer never said it was waiting"
    assert worker.is_alive() and count(Path(engine.store.location), engine.spec.name) == 0
    first.release()
    worker.join(120)
    assert result["summary"].new == 7  # type: ignore[attr-defined]
    assert f"(process {os.getpid()} on this computer" in notices[0]
    assert "waiting for it to finish" in notices[0]


def test_cancel_while_waiting_gives_up_cleanly(engine: Engine, library) -> None:
    photos, _ = library
    first = WriterLock(engine.store.location)
    first.acquire()
    cancel = threading.Event()
    try:
        summary = engine.index(
            [photos],
            on_event=lambda e: cancel.set() if isinstance(e, Notice) else None,
            cancel=cancel,
        )
    finally:
        first.release()
    assert summary.cancelled and summary.new == 0


@pytest.mark.slow  # a second process holds the lock
def test_readers_wait_for_a_write_in_progress(cli_env: Path, library, tmp_path: Path) -> None:
    """A query never reads vector files in the middle of being rewritten."""
    _, pristine = library
    shutil.copytree(pristine, cli_env)
    marker = tmp_path / "released"
    holder = _holder(
        cli_env, marker, cls="data_lock", take="held = lock.exclusive(); held.__enter__()"
    )
    done = threading.Event()
    seen: dict[str, object] = {}

    def read() -> None:
        seen["count"] = len(Store(cli_env).indexes())
        seen["released_before_read"] = marker.exists()
        done.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert not done.wait(1.0)  # blocked behind the writer
    assert holder.stdin is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    holder.wait(30)
    reader.join(60)
    assert seen == {"count": 1, "released_before_read": True}


def test_store_errors_name_the_folder(tmp_path: Path) -> None:
    from clipseek.store import store_error

    full = store_error(str(tmp_path), "Writing", OSError(errno.ENOSPC, "No space left on device"))
    assert str(tmp_path) in str(full) and "is full" in str(full)
    odd = store_error(str(tmp_path), "Reading", RuntimeError("something new"))
    assert isinstance(odd, StoreError) and "clipseek index --rebuild" in str(odd)
