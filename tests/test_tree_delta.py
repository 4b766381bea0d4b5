"""A run over a changed tree plans from the quick comparison with the SQLite file (issue
24): only the files that differ are looked up, by id, never every record through chromadb.
It must decide exactly what the full plan decides, whatever changed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from clipseek.indexing.options import IndexOptions
from clipseek.indexing.unchanged import hand_over, take_handed, tree_delta
from clipseek.models import resolve_model
from clipseek.store import ImageIndex
from tests.support.pictures import make_photo

#: CI runs these at both ends of the tested chromadb range (.ci/run).
pytestmark = pytest.mark.chroma_format


def _engine(model: Any, tiny_model: str, db: Path) -> Any:
    from clipseek.config import load_settings
    from clipseek.engine import Engine

    settings = load_settings({"model": tiny_model, "db": db})
    return Engine(settings, model_loader=lambda *_: model)


@pytest.fixture
def pair(loaded_tiny_model, tiny_model: str, photos: Path, tmp_path: Path) -> tuple[Any, Any]:
    """Two indexes of the same tree: one run by the quick comparison's plan, one by the
    full plan (``quick_check=False``)."""
    engines = tuple(
        _engine(loaded_tiny_model, tiny_model, tmp_path / name) for name in ("delta", "full")
    )
    for engine in engines:
        assert engine.index([photos]).new == 12
    return engines


def _records(engine: Any) -> dict[str, tuple[Any, ...]]:
    index = engine.store.open_index(engine.spec.key, engine.spec.collection_slug)
    assert index is not None
    entries = index.entries()
    vectors = index.get(sorted(entries))
    failures = index.failures()
    out: dict[str, tuple[Any, ...]] = {}
    for id_, entry in entries.items():
        out[entry.path] = (
            entry.size,
            entry.mtime_ns,
            entry.extra.get("inode"),
            entry.extra.get("content_hash"),
            tuple(round(float(v), 5) for v in vectors[id_][0][:8]),
        )
    for failure in failures.values():
        out["failed:" + failure.path] = (failure.size, failure.extra.get("reason"))
    return out


def _counts(summary: Any) -> tuple[Any, ...]:
    return (
        summary.total,
        summary.new,
        summary.updated,
        summary.unchanged,
        summary.removed,
        summary.reused,
        sorted(f.path for f in summary.failed),
    )


def _both(pair: tuple[Any, Any], photos: Path, monkeypatch: pytest.MonkeyPatch) -> tuple:
    delta_engine, full_engine = pair
    looked: list[object] = []
    real = ImageIndex.entries

    def every_entry(self: ImageIndex, under: str | None = None) -> Any:
        looked.append(under)
        return real(self, under)

    with monkeypatch.context() as patch:
        patch.setattr(ImageIndex, "entries", every_entry)
        by_delta = delta_engine.index([photos])
    assert looked == []  # planned without reading every record
    by_full = full_engine.index([photos], IndexOptions(quick_check=False))
    assert _counts(by_delta) == _counts(by_full)
    assert _records(delta_engine) == _records(full_engine)
    return by_delta, by_full


def test_every_kind_of_change_is_planned_as_the_full_plan_plans_it(
    pair: tuple[Any, Any], photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_photo(photos / "new.png", seed=77)  # new
    with open(photos / "city.png", "ab") as fh:  # changed
        fh.write(b"\0")
    (photos / "dog.bmp").unlink()  # removed
    (photos / "sub" / "a.jpg").rename(photos / "moved.jpg")  # renamed: its vector reused
    shutil.copy2(photos / "beach.jpg", photos / "sub" / "beach copy.jpg")  # copied: reused
    (photos / "broken.jpg").write_bytes(b"not a picture")  # fails
    st = (photos / "forest.jpeg").stat()  # same size and mtime, other bytes: ctime tells
    data = bytearray((photos / "forest.jpeg").read_bytes())
    data[-3] ^= 0xFF
    (photos / "forest.jpeg").write_bytes(bytes(data))
    os.utime(photos / "forest.jpeg", ns=(st.st_atime_ns, st.st_mtime_ns))

    first, _ = _both(pair, photos, monkeypatch)
    assert (first.new, first.updated, first.removed) == (3, 2, 2)  # broken.jpg: failed
    assert first.reused == 2 and [f.path for f in first.failed] == [str(photos / "broken.jpg")]

    # The failure mended, another file gone, one untouched failure named again.
    (photos / "bad.png").write_bytes(b"\x89PNG broken")
    _both(pair, photos, monkeypatch)
    make_photo(photos / "broken.jpg", seed=5)
    (photos / "cat.webp").unlink()
    second, _ = _both(pair, photos, monkeypatch)
    assert [f.path for f in second.failed] == [str(photos / "bad.png")]
    assert second.removed == 1

    # A failure whose file went is forgotten.
    (photos / "bad.png").unlink()
    _both(pair, photos, monkeypatch)
    delta_engine = pair[0]
    assert not any(k.startswith("failed:") for k in _records(delta_engine))
    assert delta_engine.index([photos]).unchanged == delta_engine.index([photos]).total


def test_a_root_that_looks_empty_keeps_its_records_in_the_delta_plan_too(
    pair: tuple[Any, Any], photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for engine in pair:  # the subfolder as a root of its own
        assert engine.index([photos / "sub"]).unchanged == 4
    for path in sorted((photos / "sub").rglob("*"), reverse=True):
        if path.is_file():
            path.unlink()
    delta_engine, full_engine = pair
    notices: list[str] = []
    by_delta = delta_engine.index(
        [photos / "sub"], on_event=lambda e: notices.append(str(getattr(e, "message", "")))
    )
    by_full = full_engine.index([photos / "sub"], IndexOptions(quick_check=False))
    assert by_delta.removed == by_full.removed == 0
    assert any("Found no images in" in n for n in notices)
    assert _records(delta_engine) == _records(full_engine)


def test_a_handed_delta_is_dropped_once_the_index_was_written(
    pair: tuple[Any, Any], photos: Path, tiny_model: str
) -> None:
    engine = pair[0]
    make_photo(photos / "new.png", seed=77)
    spec = resolve_model(tiny_model)
    options = IndexOptions()
    delta = tree_delta(engine.store.location, spec, [photos], options)
    assert delta is not None and [f.path for f in delta.differing] == [str(photos / "new.png")]
    hand_over(delta)
    assert take_handed(engine.store.location, spec, [photos], options) is delta
    assert take_handed(engine.store.location, spec, [photos], options) is None  # taken once
    hand_over(delta)
    assert take_handed(engine.store.location, spec, [photos / "sub"], options) is None
    hand_over(delta)
    assert engine.index([photos]).new == 1  # a write since the comparison
    assert take_handed(engine.store.location, spec, [photos], options) is None


@pytest.mark.slow  # the check's self-search runs in a child process
def test_after_an_interrupted_run_the_check_comes_first_then_the_delta_plan(
    pair: tuple[Any, Any], photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clipseek.store.repair import RunMarker

    engine = pair[0]
    RunMarker(engine.store.location).begin()  # left behind by a run that never finished
    make_photo(photos / "new.png", seed=77)
    looked: list[object] = []
    real = ImageIndex.entries
    monkeypatch.setattr(
        ImageIndex, "entries", lambda self, under=None: looked.append(under) or real(self, under)
    )
    notices: list[str] = []
    summary = engine.index(
        [photos], on_event=lambda e: notices.append(str(getattr(e, "message", "")))
    )
    assert any("interrupted; the index checked healthy" in n for n in notices), notices
    assert summary.new == 1 and summary.unchanged == 12 and looked == []
    assert not RunMarker(engine.store.location).path.exists()


def test_after_a_delta_run_the_records_cache_holds_what_sqlite_holds(
    pair: tuple[Any, Any], photos: Path, tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run brings the records cache up to date from the records it wrote, so the next
    unchanged run does not read every record from SQLite; what it holds is exactly what a
    full read gives."""
    from clipseek.indexing import unchanged
    from clipseek.store.records import COLLECTION_PREFIX, FAILURES_PREFIX

    engine = pair[0]
    spec = resolve_model(tiny_model)
    db = Path(engine.store.location) / "chroma.sqlite3"
    names = (COLLECTION_PREFIX + spec.collection_slug, FAILURES_PREFIX + spec.collection_slug)
    assert engine.index([photos]).unchanged == 12  # the cache made for the tree as indexed
    make_photo(photos / "new.png", seed=77)
    with open(photos / "city.png", "ab") as fh:
        fh.write(b"\0")
    (photos / "dog.bmp").unlink()
    (photos / "broken.jpg").write_bytes(b"not a picture")
    summary = engine.index([photos])
    assert (summary.new, summary.updated, summary.removed, len(summary.failed)) == (1, 1, 1, 1)

    read: list[object] = []
    real = unchanged._stored
    monkeypatch.setattr(unchanged, "_stored", lambda *a: read.append(a) or real(*a))
    delta = tree_delta(engine.store.location, spec, [photos], IndexOptions())
    assert delta is not None and delta.nothing_to_do and delta.unchanged == 12
    assert read == []  # from the cache brought up to date
    key = unchanged._records_key(unchanged._database_identity(db), *names)
    assert unchanged.load_cache(db.with_name(unchanged.RECORDS_CACHE), key) == real(db, *names)


def test_a_root_whose_stored_text_is_another_paths_is_not_taken_for_it(
    loaded_tiny_model: Any, tiny_model: str, tmp_path: Path
) -> None:
    """Roots are recorded as stored text: a folder literally named ``caf\\xe9`` must not
    pass for the recorded folder whose name holds the byte 0xE9 (whose text that is), or
    the comparison would take the other's pictures for removed ones."""
    root = tmp_path / "photos"
    literal = os.path.join(str(root), "caf\\xe9")
    raw = os.fsdecode(os.path.join(os.fsencode(str(root)), b"caf\xe9"))
    for folder, seed in ((literal, 0), (raw, 10)):
        for i in range(3):
            make_photo(Path(folder) / f"p{i}.jpg", seed=seed + i)
    engine = _engine(loaded_tiny_model, tiny_model, tmp_path / "db")
    assert engine.index([raw]).new == 3
    spec = resolve_model(tiny_model)
    assert tree_delta(engine.store.location, spec, [literal], IndexOptions()) is None
    summary = engine.index([literal])
    assert (summary.new, summary.removed) == (3, 0)
    again = engine.index([raw])
    assert (again.unchanged, again.removed) == (3, 0)
