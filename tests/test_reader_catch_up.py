"""Issue 24: a long-lived direct reader (the app, ``clipseek serve``) catches up with a
writer's commit by reading what the writer appended to the vector cache (new row ids,
dead marks, the manifest), not the whole row table, a count of every record or a
snapshot; its answers stay those of a reader that opens the index afresh."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from clipseek.store import COLLECTION_PREFIX, Store
from clipseek.store import vector_cache as vc
from clipseek.store.cache_build import refresh_caches
from clipseek.store.direct import DirectIndex
from clipseek.store.keys import path_id
from tests.support.files import file_hashes
from tests.support.stores import DIM, KEY, NAME, SLUG
from tests.support.stores import record as _record
from tests.support.stores import unit_vectors as _unit


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """600 records and their vector cache, as an index run leaves them."""
    db = tmp_path_factory.mktemp("catch-up") / "db"
    vectors = _unit(np.random.default_rng(41), 600)
    store = Store(db)
    index = store.create_index(KEY, NAME, SLUG, DIM)
    for start in range(0, 600, 200):
        index.upsert([_record(i, vectors[i]) for i in range(start, start + 200)])
    index.add_roots(["/photos"])
    store.close()
    assert refresh_caches(db) == [COLLECTION_PREFIX + SLUG]
    return db, vectors


@pytest.fixture
def db(built, tmp_path: Path) -> Path:
    copy = tmp_path / "db"
    shutil.copytree(built[0], copy)
    return copy


def _reader(db: Path) -> DirectIndex:
    index = Store(db, reader=True, direct=True, approximate=True).open_index(KEY, SLUG)
    assert isinstance(index, DirectIndex) and index.from_cache
    index.query(_unit(np.random.default_rng(2), 1)[0], 1)  # a first answer, as the faces give
    return index


def _write(db: Path, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A writer's commits: 5 new records, 3 replaced vectors, 4 deletions."""
    rng = np.random.default_rng(43)
    new, replaced = _unit(rng, 5), _unit(rng, 3)
    writer = Store(db)
    index = writer.open_index(KEY, SLUG)
    assert index is not None
    index.upsert([_record(700 + n, v) for n, v in enumerate(new)])
    index.upsert([_record(10 + n, v) for n, v in enumerate(replaced)])
    index.delete([path_id(_record(i, vectors[i]).path) for i in range(20, 24)])
    writer.close()
    return new, replaced


def _answers(index: DirectIndex, queries: np.ndarray) -> list[list[tuple[str, float]]]:
    return [[(h.path, round(h.score, 5)) for h in index.query(q, 8)] for q in queries]


def test_a_commit_is_caught_up_from_what_was_appended(built, db: Path, monkeypatch) -> None:
    _, vectors = built
    reader = _reader(db)
    before = reader._vectors.view.manifest  # type: ignore[union-attr]
    counted: list[str] = []
    read: list[tuple[str, int, int]] = []
    real_rows_of = vc._rows_of

    def rows_of(path: Path, first: int, stop: int, crc: int, expected: int) -> np.ndarray:
        read.append((path.name.rsplit(".", 2)[-2], first, stop))
        return real_rows_of(path, first, stop, crc, expected)

    new, replaced = _write(db, vectors)  # (the writer counts the records, as it must)
    monkeypatch.setattr(vc, "record_count", lambda *a: counted.append("count") or 0)
    monkeypatch.setattr(vc, "_rows_of", rows_of)
    # the new record, a replaced vector's record, and no deleted record
    assert reader.query(new[4], 1)[0].path.endswith("img_00704.jpg")
    top = reader.query(replaced[1], 1)[0]
    assert top.path.endswith("img_00011.jpg") and top.score == pytest.approx(1.0, abs=1e-5)
    assert reader.count() == 600 + 5 - 4
    after = reader._vectors.view.manifest  # type: ignore[union-attr]
    assert reader.from_cache and after.epoch == before.epoch and after.rows == before.rows + 8
    # Only the appended entries were read, and SQLite's records were not counted again.
    assert read == [("rowids", before.rows, after.rows), ("dead", before.dead, after.dead)]
    assert counted == []
    # The same answers as a reader that opens the index afresh (reading every row).
    monkeypatch.undo()
    fresh = _reader(db)
    queries = np.concatenate([new, replaced, vectors[18:26], _unit(np.random.default_rng(5), 6)])
    assert _answers(reader, queries) == _answers(fresh, queries)
    deleted = {_record(i, vectors[i]).path for i in range(20, 24)}
    assert not deleted & {p for answer in _answers(reader, queries) for p, _ in answer}


def test_several_commits_in_a_row_are_caught_up_one_after_another(db: Path) -> None:
    reader = _reader(db)
    rng = np.random.default_rng(47)
    writer = Store(db)
    index = writer.open_index(KEY, SLUG)
    assert index is not None
    for round_ in range(3):
        fresh = _unit(rng, 2)
        index.upsert([_record(800 + 2 * round_ + n, v) for n, v in enumerate(fresh)])
        assert reader.query(fresh[1], 1)[0].path.endswith(f"img_{801 + 2 * round_:05d}.jpg")
    writer.close()
    assert reader.count() == 606 and reader.from_cache


def test_a_garbled_append_is_passed_over_and_the_files_answer(built, db: Path) -> None:
    _, vectors = built
    reader = _reader(db)
    new, _ = _write(db, vectors)
    folder = vc.cache_folder(db, reader._collection.id)
    manifest = vc.read_manifest(folder)
    with (folder / "rowids.i64").open("r+b") as fh:  # the last appended row id, garbled
        fh.seek((manifest.rows - 1) * 8)
        fh.write((10**9).to_bytes(8, "little"))
    assert reader.query(new[4], 1)[0].path.endswith("img_00704.jpg")
    assert not reader.from_cache
    assert reader.cache_note == "the cache's row table does not match its checksum"


def test_lookup_and_get_follow_a_commit(built, db: Path) -> None:
    _, vectors = built
    reader = _reader(db)
    ids = [path_id(_record(i, vectors[0]).path) for i in (11, 21, 700)]
    assert set(reader.lookup(ids)) == set(ids[:2])  # 700 is not indexed yet
    new, replaced = _write(db, vectors)
    found = reader.lookup(ids)
    assert set(found) == {ids[0], ids[2]}  # 21 was deleted, 700 added
    assert found[ids[2]].path.endswith("img_00700.jpg")
    got = reader.get(ids)
    assert set(got) == {ids[0], ids[2]}
    np.testing.assert_allclose(got[ids[0]][0], replaced[1], atol=1e-6)
    np.testing.assert_allclose(got[ids[2]][0], new[0], atol=1e-6)


def test_holds_under_answers_from_the_files_as_chroma_does(db: Path) -> None:
    reader = _reader(db)
    chroma = Store(db, reader=True).open_index(KEY, SLUG)
    assert chroma is not None
    for folder in ("/photos", "/photos/2021", "/photos/2022/trip-3", "/photos/1999", "/elsewhere"):
        assert reader.holds_under(folder) == chroma.holds_under(folder), folder
    assert reader.holds_under("/photos/2021") and not reader.holds_under("/photos/1999")
    assert reader.unavailable is None


def test_a_reader_that_catches_up_writes_nothing(built, db: Path) -> None:
    _, vectors = built
    reader = _reader(db)
    _write(db, vectors)
    before = file_hashes(db)
    rng = np.random.default_rng(53)
    for q in _unit(rng, 4):
        reader.query(q, 5)
        reader.query(q, 5, under="/photos/2021")
    reader.lookup([path_id(_record(3, vectors[3]).path)])
    reader.get([path_id(_record(4, vectors[4]).path)])
    reader.holds_under("/photos/2020")
    assert file_hashes(db) == before


def test_writes_to_another_collection_between_keep_the_cache_appended(db: Path) -> None:
    """An index run deletes the failure records of files that now succeed (Chroma logs a
    delete even of an absent record), which moves the database's shared sequence numbers
    on between two writes of the index: the writer still appends to the same cache."""
    reader = _reader(db)
    before = reader._vectors.view.manifest  # type: ignore[union-attr]
    writer = Store(db)
    index = writer.open_index(KEY, SLUG)
    assert index is not None
    failures = writer._failures_collection(SLUG)
    fresh = _unit(np.random.default_rng(59), 3)
    records = [_record(900 + n, v) for n, v in enumerate(fresh)]
    failures.delete(ids=[path_id(r.path) for r in records])
    index.upsert(records)
    writer.close()
    assert reader.query(fresh[0], 1)[0].path.endswith("img_00900.jpg")
    after = reader._vectors.view.manifest  # type: ignore[union-attr]
    assert reader.from_cache and after.epoch == before.epoch and after.rows == before.rows + 3
