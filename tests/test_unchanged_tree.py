"""A re-index of an unchanged tree is decided from the SQLite file alone; anything else
falls through to the normal path (which the rest of the suite tests)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clipseek.indexing.options import IndexOptions
from clipseek.indexing.unchanged import quick_unchanged
from clipseek.models import resolve_model
from tests.support.pictures import make_photo
from tests.support.probes import cli_code, run_python


@pytest.fixture
def indexed(loaded_tiny_model, tiny_model: str, photos: Path, tmp_path: Path):
    from clipseek.config import load_settings
    from clipseek.engine import Engine

    settings = load_settings({"model": tiny_model, "db": tmp_path / "db"})
    engine = Engine(settings, model_loader=lambda *_: loaded_tiny_model)
    assert engine.index([photos]).new == 12
    return engine


def _quick(engine, roots, **options):
    events: list[object] = []
    summary = quick_unchanged(
        engine.store.location,
        resolve_model(engine.settings.model),
        roots,
        IndexOptions(**options),
        events.append,
    )
    return summary, events


def test_unchanged_tree_is_done_without_chromadb_or_model(indexed, photos: Path) -> None:
    summary, events = _quick(indexed, [photos])
    assert summary is not None and summary.unchanged == summary.total == 12
    assert not summary.model_loaded and summary.new == summary.removed == 0
    assert type(events[-1]).__name__ == "IndexFinished"
    # A subfolder named for the first time is recorded as a root by the normal path; from
    # then on it is quick too, and only its own files count.
    assert _quick(indexed, [photos / "sub"])[0] is None
    assert indexed.index([photos / "sub"]).unchanged == 4
    sub, _ = _quick(indexed, [photos / "sub"])
    assert sub is not None and sub.total == 4


@pytest.mark.parametrize(
    "change", ["touch", "grow", "add", "remove", "rebuild", "hidden", "same-stat replace"]
)
def test_any_difference_falls_through(indexed, photos: Path, change: str) -> None:
    options: dict[str, object] = {}
    target = photos / "beach.jpg"
    if change == "touch":
        st = target.stat()
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    elif change == "grow":
        with open(target, "ab") as fh:
            fh.write(b"\0")
    elif change == "add":
        make_photo(photos / "new.png", seed=99)
    elif change == "remove":
        target.unlink()
    elif change == "rebuild":
        options["rebuild"] = True
    elif change == "same-stat replace":  # other bytes, same size and mtime: ctime tells
        st = target.stat()
        data = bytearray(target.read_bytes())
        data[-3] ^= 0xFF
        target.write_bytes(bytes(data))
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif change == "hidden":
        make_photo(photos / ".hidden" / "x.png", seed=98)
        options["include_hidden"] = True
    summary, events = _quick(indexed, [photos], **options)
    assert summary is None and events == []


def test_a_new_root_or_a_recorded_failure_falls_through(
    indexed, photos: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    assert _quick(indexed, [photos, other])[0] is None
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    summary = indexed.index([photos])
    assert len(summary.failed) == 1
    assert _quick(indexed, [photos])[0] is None  # the failure is reported by the normal path
    again = indexed.index([photos])
    assert len(again.failed) == 1 and again.unchanged == 12


def test_a_name_that_is_not_utf8_is_quick_too(indexed, photos: Path) -> None:
    """Such a path is stored base64-encoded (``path_b64``); the quick look decodes it."""
    make_photo(photos / os.fsdecode(b"odd-\xff-name.png"), seed=97)
    assert indexed.index([photos]).new == 1
    summary, _ = _quick(indexed, [photos])
    assert summary is not None and summary.unchanged == summary.total == 13


def test_records_from_before_photo_dates_fall_through_until_the_normal_run(
    indexed, photos: Path
) -> None:
    """An older index lacks a record's photo date: the normal run adds it (no model run),
    and from then on the quick look is enough."""
    import sqlite3

    db = Path(indexed.store.location) / "chroma.sqlite3"
    with sqlite3.connect(db) as con:
        (rowid,) = con.execute(
            "SELECT MIN(id) FROM embedding_metadata WHERE key = 'taken_local'"
        ).fetchone()
        con.execute("DELETE FROM embedding_metadata WHERE id = ? AND key = 'taken_local'", (rowid,))
    con.close()
    assert _quick(indexed, [photos])[0] is None
    again = indexed.index([photos])
    assert again.unchanged == 12 and again.new == 0 and not again.model_loaded
    summary, _ = _quick(indexed, [photos])
    assert summary is not None and summary.unchanged == 12


@pytest.mark.slow  # a fresh interpreter
def test_a_fresh_process_reindex_imports_neither_chromadb_nor_a_model(
    indexed, photos: Path
) -> None:
    env = {"CLIPSEEK_DB": indexed.store.location, "CLIPSEEK_MODEL": indexed.settings.model}
    ran = run_python(cli_code(["index", str(photos)]), env=env)
    assert ran.returncode == 0 and "12 unchanged" in ran.output, ran.output
    assert not ran.modules & {"chromadb", "torch", "open_clip", "onnxruntime"}


def test_the_records_read_are_kept_only_while_the_database_is_unchanged(
    indexed, photos: Path
) -> None:
    """The quick look keeps what it read beside the database and uses it while the
    database's files are the same; any write to them, or a damaged copy, means reading
    the database again."""
    import marshal

    from clipseek.indexing.unchanged import RECORDS_CACHE

    cache = Path(indexed.store.location) / RECORDS_CACHE
    first, _ = _quick(indexed, [photos])
    assert first is not None and cache.exists()
    key, stored, roots = marshal.loads(cache.read_bytes())
    assert len(stored) == 12
    # A record taken out of the kept copy shows the copy is what the next look reads...
    stored.pop(next(iter(stored)))
    cache.write_bytes(marshal.dumps((key, stored, roots)))
    assert _quick(indexed, [photos])[0] is None
    # ...until the database changes (here only its times: any write changes its ctime).
    db = Path(indexed.store.location) / "chroma.sqlite3"
    st = db.stat()
    os.utime(db, ns=(st.st_atime_ns, st.st_mtime_ns))
    again, _ = _quick(indexed, [photos])
    assert again is not None and again.unchanged == 12
    assert len(marshal.loads(cache.read_bytes())[1]) == 12  # kept afresh
    cache.write_bytes(b"\x00garbage")
    third, _ = _quick(indexed, [photos])
    assert third is not None and third.unchanged == 12
    # A change found in the tree is found with the kept records just the same.
    (photos / "beach.jpg").unlink()
    assert _quick(indexed, [photos])[0] is None
    assert indexed.index([photos]).removed == 1
