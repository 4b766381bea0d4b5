"""A re-index of an unchanged tree is decided from the SQLite file alone; anything else
falls through to the normal path (which the rest of the suite tests)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from clipseek.indexing.options import IndexOptions
from clipseek.indexing.unchanged import tree_delta, unchanged_summary
from clipseek.models import resolve_model
from tests.support.pictures import make_photo
from tests.support.probes import cli_code, run_python

#: CI runs these at both ends of the tested chromadb range (.ci/run).
pytestmark = pytest.mark.chroma_format


@pytest.fixture
def indexed(loaded_tiny_model, tiny_model: str, photos: Path, tmp_path: Path):
    from clipseek.config import load_settings
    from clipseek.engine import Engine

    settings = load_settings({"model": tiny_model, "db": tmp_path / "db"})
    engine = Engine(settings, model_loader=lambda *_: loaded_tiny_model)
    assert engine.index([photos]).new == 12
    return engine


def _quick(engine, roots, **options):
    """The quick check as the engine makes it: the summary of a run with nothing to do, or
    None when the normal path must run."""
    events: list[object] = []
    delta = tree_delta(
        engine.store.location, resolve_model(engine.settings.model), roots, IndexOptions(**options)
    )
    if delta is None or not delta.nothing_to_do:
        return None, events
    return unchanged_summary(delta, events.append, time.perf_counter()), events


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


def test_a_new_root_falls_through_and_a_recorded_failure_is_named(
    indexed, photos: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    assert _quick(indexed, [photos, other])[0] is None
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    summary = indexed.index([photos])
    assert len(summary.failed) == 1
    quick, events = _quick(indexed, [photos])  # named again, as the normal path does
    assert quick is not None and [f.path for f in quick.failed] == [str(photos / "broken.jpg")]
    assert [type(e).__name__ for e in events].count("FileFailed") == 1
    again = indexed.index([photos])
    assert len(again.failed) == 1 and again.unchanged == 12 == quick.unchanged


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


@pytest.mark.slow  # eight seconds: the quick tier's slowest test, kept for the full run
def test_the_records_read_are_kept_only_while_the_database_is_unchanged(
    indexed, photos: Path
) -> None:
    """The quick look keeps what it read beside the database and uses it while the
    database's files are the same; any write to them, or a damaged copy, means reading
    the database again."""
    from clipseek.indexing import unchanged

    cache = Path(indexed.store.location) / unchanged.RECORDS_CACHE
    first, _ = _quick(indexed, [photos])
    assert first is not None and cache.exists()
    key, stored, roots, failed, _offset = _payload(cache)
    assert len(stored) == 12
    # A record taken out of the kept copy (by clipseek's own hand, signed) shows the copy is
    # what the next look reads...
    stored.pop(next(iter(stored)))
    unchanged.save_cache(cache, key, stored, roots, failed)
    assert _quick(indexed, [photos])[0] is None
    # ...until the database changes (here only its times: any write changes its ctime).
    db = Path(indexed.store.location) / "chroma.sqlite3"
    st = db.stat()
    os.utime(db, ns=(st.st_atime_ns, st.st_mtime_ns))
    again, _ = _quick(indexed, [photos])
    assert again is not None and again.unchanged == 12
    assert len(_payload(cache)[1]) == 12  # kept afresh
    cache.write_bytes(b"\x00garbage")
    third, _ = _quick(indexed, [photos])
    assert third is not None and third.unchanged == 12
    # A change found in the tree is found with the kept records just the same.
    (photos / "beach.jpg").unlink()
    assert _quick(indexed, [photos])[0] is None
    assert indexed.index([photos]).removed == 1


def test_an_untested_chromadb_release_takes_the_normal_path(
    indexed, photos: Path, monkeypatch
) -> None:
    from clipseek.store import chroma_format

    monkeypatch.setattr(chroma_format, "_release", [])
    monkeypatch.setattr(chroma_format, "installed_chromadb", lambda: "2.0.0")
    assert _quick(indexed, [photos])[0] is None
    assert indexed.index([photos]).unchanged == 12


def _payload(cache: Path) -> tuple:
    """What a records cache holds, and where, whatever header its format puts first."""
    import marshal

    data = cache.read_bytes()
    for offset in range(len(data)):
        try:
            found = marshal.loads(data[offset:])
        except (ValueError, EOFError, TypeError):
            continue
        if isinstance(found, tuple) and len(found) == 4:
            return (*found, offset)  # type: ignore[return-value]
    raise AssertionError("no records in the cache")


def _forge(cache: Path, stored: object) -> None:
    """The cache rewritten by someone who knows its format but not this user's key."""
    import marshal

    key, _stored, roots, failed, offset = _payload(cache)
    data = cache.read_bytes()
    cache.write_bytes(data[:offset] + marshal.dumps((key, stored, roots, failed)))


def test_a_malformed_or_forged_records_cache_is_ignored(indexed, photos: Path) -> None:
    """Issue 25, item 9: a cache with tuple keys crashed `index` (AttributeError); a
    well-formed forged one made it call new files unchanged, so they were never embedded."""
    import shutil

    from clipseek.indexing.unchanged import RECORDS_CACHE

    cache = Path(indexed.store.location) / RECORDS_CACHE
    assert _quick(indexed, [photos])[0] is not None and cache.exists()
    _key, stored, _roots, _failed, _offset = _payload(cache)
    _forge(cache, {(path,): stat for path, stat in stored.items()})
    summary, _ = _quick(indexed, [photos])
    assert summary is not None and summary.unchanged == 12  # read from the database

    added = photos / "added.jpg"
    shutil.copyfile(next(photos.glob("*.jpg")), added)
    st = added.stat()
    forged = dict(stored)
    forged[str(added)] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    _forge(cache, forged)
    assert _quick(indexed, [photos])[0] is None  # the new file is new
    assert indexed.index([photos]).new == 1
