"""The direct reader (store/direct.py): Chroma's answers, from Chroma's files, without
chromadb; anything it does not know goes to Chroma; it never writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clipseek.store import Store, chroma_format
from clipseek.store.direct import DirectIndex
from tests.support.engines import assert_same_answers
from tests.support.files import file_hashes
from tests.support.stores import DIM, FILTERS, KEY, NAME, SLUG
from tests.support.stores import record as _record
from tests.support.stores import unit_vectors as _unit

#: CI runs these at both ends of the tested chromadb range (.ci/run).
pytestmark = pytest.mark.chroma_format


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """1,200 records written in batches (so Chroma folds most into its vector files),
    then 40 vectors replaced and 25 records deleted (so the write log holds changes the
    files do not): both places a reader must combine."""
    db = tmp_path_factory.mktemp("direct") / "db"
    rng = np.random.default_rng(7)
    vectors = _unit(rng, 1200)
    store = Store(db)
    index = store.create_index(KEY, NAME, SLUG, DIM)
    for start in range(0, 1200, 100):
        index.upsert([_record(i, vectors[i]) for i in range(start, min(start + 100, 1200))])
    index.add_roots(["/photos"])
    replaced = _unit(rng, 40)
    index.upsert([_record(i, replaced[n]) for n, i in enumerate(range(100, 140))])
    vectors[100:140] = replaced
    from clipseek.store.keys import path_id

    index.delete([path_id(_record(i, vectors[i]).path) for i in range(500, 525)])
    store.close()
    return db, vectors


def _direct_and_chroma(db: Path) -> tuple[DirectIndex, Any]:
    direct = Store(db, reader=True, direct=True).open_index(KEY, SLUG)
    chroma = Store(db, reader=True).open_index(KEY, SLUG)
    assert isinstance(direct, DirectIndex)
    assert chroma is not None and not isinstance(chroma, DirectIndex)
    return direct, chroma


def test_the_index_under_test_has_vectors_in_both_places(built) -> None:
    import sqlite3

    db, _ = built
    con = sqlite3.connect(db / "chroma.sqlite3")
    logged = con.execute("SELECT COUNT(*) FROM embeddings_queue").fetchone()[0]
    con.close()
    folders = [p for p in db.iterdir() if p.is_dir()]
    assert logged >= 40
    assert any((p / "index_metadata.pickle").exists() for p in folders)


@pytest.mark.parametrize(("under", "clauses"), FILTERS)
def test_answers_equal_chromas_exact_scan(built, under, clauses) -> None:
    from clipseek.store.where import where_of

    db, vectors = built
    direct, chroma = _direct_and_chroma(db)
    rng = np.random.default_rng(len(clauses) + len(under or ""))
    queries = [*_unit(rng, 4), vectors[120], vectors[7]]  # two stored vectors: score 1.0
    for query in queries:
        for n in (1, 10, 2000):
            got = direct.query(query, n, under=under, clauses=clauses)
            want = chroma._exact(query, n, where_of(under, clauses, chroma.schema))
            assert [h.id for h in got] == [h.id for h in want]
            assert np.allclose([h.score for h in got], [h.score for h in want], atol=1e-5)
            assert [h.path for h in got] == [h.path for h in want]
            assert [dict(h.metadata) for h in got] == [dict(h.metadata) for h in want]
    assert direct.unavailable is None  # answered from the files, not by asking Chroma


def test_top_answers_equal_chromas_search_and_replaced_vectors_win(built) -> None:
    db, vectors = built
    direct, chroma = _direct_and_chroma(db)
    for i in (0, 120, 777, 1199):
        got = direct.query(vectors[i], 5)
        want = chroma.query(vectors[i], 5)
        assert [h.id for h in got] == [h.id for h in want]
        assert got[0].score == pytest.approx(1.0, abs=1e-5)
        assert got[0].path.endswith(f"img_{i:05d}.jpg")
    # a deleted record is never answered, though its vector may still be in the files
    assert not [h for h in direct.query(vectors[510], 1200) if "img_00510" in h.path]
    assert direct.count() == chroma.count() == 1175
    assert direct.cameras == chroma.cameras and direct.roots == chroma.roots


def test_get_and_lookup_equal_chromas(built) -> None:
    from clipseek.store.keys import path_id

    db, _ = built
    direct, chroma = _direct_and_chroma(db)
    ids = [path_id(_record(i, np.zeros(DIM)).path) for i in (3, 120, 510, 1100)] + ["nope"]
    got, want = direct.get(ids), chroma.get(ids)
    assert set(got) == set(want) and len(got) == 3  # the deleted one and "nope" are absent
    for key, (vector, meta) in want.items():
        assert np.allclose(got[key][0], vector, atol=1e-6)
        assert dict(got[key][1]) == dict(meta)
    assert direct.lookup(ids) == chroma.lookup(ids)


def test_what_it_cannot_translate_is_answered_by_chroma(built) -> None:
    db, vectors = built
    direct, chroma = _direct_and_chroma(db)
    clauses = [{"camera": {"$ne": "Pixel 8"}}]  # an operator clipseek never writes
    got = direct.query(vectors[3], 20, clauses=clauses)
    assert direct.unavailable is not None
    assert [h.id for h in got] == [h.id for h in chroma.query(vectors[3], 20, clauses=clauses)]


def test_files_it_cannot_read_are_answered_by_chroma(built, monkeypatch) -> None:
    from clipseek.store import direct as direct_module

    db, vectors = built
    monkeypatch.setattr(direct_module, "label_map", lambda _segment: None)
    direct, chroma = _direct_and_chroma(db)
    got = direct.query(vectors[9], 10)
    assert direct.unavailable is not None
    assert [h.id for h in got] == [h.id for h in chroma.query(vectors[9], 10)]


def test_a_reader_never_writes(built) -> None:
    db, vectors = built

    before = file_hashes(db)
    direct, _ = _direct_and_chroma(db)
    direct.query(vectors[1], 10, under="/photos/2021", clauses=[{"camera": "Pixel 8"}])
    direct.get(["x"])
    assert file_hashes(db) == before


def test_it_follows_another_processs_writes(built, tmp_path: Path) -> None:
    import shutil

    db, _ = built
    copy = tmp_path / "db"
    shutil.copytree(db, copy)
    direct = Store(copy, reader=True, direct=True).open_index(KEY, SLUG)
    assert isinstance(direct, DirectIndex)
    fresh = _unit(np.random.default_rng(99), 1)[0]
    assert direct.query(fresh, 1)[0].score < 0.99
    writer = Store(copy)
    index = writer.open_index(KEY, SLUG)
    assert index is not None
    index.upsert([_record(5000, fresh)])
    writer.close()
    top = direct.query(fresh, 1)[0]
    assert top.path.endswith("img_05000.jpg") and top.score == pytest.approx(1.0, abs=1e-5)
    assert direct.unavailable is None


def test_a_missing_model_index_is_none_without_chroma(built) -> None:
    db, _ = built
    assert Store(db, reader=True, direct=True).open_index("other-key", "other-slug") is None


def test_a_direct_engine_answers_like_a_snapshot_reader(engine, photos: Path, settings) -> None:
    from clipseek.engine import Engine

    engine.index([photos])
    direct = Engine(settings, model_loader=engine._model_loader, direct=True)
    assert_same_answers(engine, direct, ("a red circle", "a city at night"))
    assert isinstance(direct.open_index(), DirectIndex)


def test_a_direct_store_says_when_another_process_wrote_and_catches_up(
    built, tmp_path: Path
) -> None:
    """What the app's watcher asks: changed() after another process's write, and after
    catch_up() the next search reads the new state (counted in reloads)."""
    import shutil

    db, _ = built
    copy = tmp_path / "db"
    shutil.copytree(db, copy)
    reader = Store(copy, reader=True, direct=True)
    direct = reader.open_index(KEY, SLUG)
    assert isinstance(direct, DirectIndex) and reader.open_index(KEY, SLUG) is direct
    assert not reader.changed() and reader.reloads == 0
    writer = Store(copy)
    index = writer.open_index(KEY, SLUG)
    assert index is not None
    fresh = _unit(np.random.default_rng(5), 1)[0]
    index.upsert([_record(6000, fresh)])
    writer.close()
    assert reader.changed()
    reader.catch_up()
    assert not reader.changed() and reader.reloads == 1
    assert direct.count() == 1176
    assert direct.query(fresh, 1)[0].path.endswith("img_06000.jpg")
    assert reader.reloads == 1  # the search read what catch_up read


def test_a_store_whose_direct_index_gave_up_follows_its_snapshot(built, monkeypatch) -> None:
    from clipseek.store import direct as direct_module

    db, vectors = built
    reader = Store(db, reader=True, direct=True)
    monkeypatch.setattr(direct_module, "label_map", lambda _segment: None)
    direct = reader.open_index(KEY, SLUG)
    assert isinstance(direct, DirectIndex) and direct.unavailable is not None
    assert direct.query(vectors[4], 1)[0].path.endswith("img_00004.jpg")
    assert not reader.changed()  # nothing was written; it must not keep saying so


def test_an_index_made_anew_elsewhere_is_read_anew(built, tmp_path: Path) -> None:
    """``clipseek index --rebuild`` in another process replaces the collection: the app's
    next search reads the new one directly, not the old one, and not through Chroma."""
    import shutil

    db, _ = built
    copy = tmp_path / "db"
    shutil.copytree(db, copy)
    reader = Store(copy, reader=True, direct=True)
    old = reader.open_index(KEY, SLUG)
    assert isinstance(old, DirectIndex) and old.count() == 1175
    writer = Store(copy)
    writer.drop_index(KEY, SLUG)
    fresh = _unit(np.random.default_rng(11), 1)[0]
    writer.create_index(KEY, NAME, SLUG, DIM).upsert([_record(7000, fresh)])
    writer.close()
    assert old.count() == 1  # answered through Chroma: the old collection is gone
    new = reader.open_index(KEY, SLUG)
    assert isinstance(new, DirectIndex) and new is not old and new.unavailable is None
    assert new.count() == 1
    assert new.query(fresh, 1)[0].path.endswith("img_07000.jpg")


def test_a_query_of_another_size_is_chromas_to_refuse(built) -> None:
    from clipseek.errors import StoreError

    db, _ = built
    direct, _ = _direct_and_chroma(db)
    with pytest.raises(StoreError):
        direct.query(np.ones(DIM + 3, dtype=np.float32), 3)


@pytest.mark.parametrize("scale", [3.0, 0.5])
def test_a_stored_vector_not_of_unit_length_is_named_never_renormalised(
    built, tmp_path: Path, scale: float
) -> None:
    """Issue 25, item 2: the direct reader divided a garbled vector by its norm and ranked
    it among the real ones; clipseek writes unit vectors, so any other is damage."""
    import shutil

    from clipseek.errors import DamagedIndexError

    db, _ = built
    copy = tmp_path / "db"
    shutil.copytree(db, copy)
    writer = Store(copy)
    index = writer.open_index(KEY, SLUG)
    assert index is not None
    direction = _unit(np.random.default_rng(21), 1)[0]
    index.upsert([_record(8000, scale * direction)])  # in the write log as written
    writer.close()
    direct = Store(copy, reader=True, direct=True)
    with pytest.raises(DamagedIndexError, match=r"img_08000\.jpg.*clipseek repair"):
        index = direct.open_index(KEY, SLUG)
        assert index is not None
        index.query(direction, 3)


# --------------------------------------------------------------------------- the tested range


def test_the_tested_range_is_pyprojects_and_holds_the_installed_chromadb() -> None:
    """One range, written twice (the requirement pip reads, the gate clipseek reads), and
    the suite runs on a release inside it, so these tests test the files' reading."""
    import tomllib
    from importlib.metadata import version

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    wanted = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    assert chroma_format.TESTED_REQUIREMENT in wanted
    assert chroma_format.installed_chromadb() == version("chromadb")
    assert chroma_format.release_known()


def test_an_untested_chromadb_is_read_through_its_own_api_and_said_once(
    built, tmp_path: Path, monkeypatch, caplog
) -> None:
    """Outside the tested range nothing reads Chroma's files for an answer: the direct
    reader, ``info``'s peek and the snapshot's links give way to chromadb, with one debug
    line that says why."""
    import logging
    import shutil

    from clipseek.store import snapshot

    db, vectors = built
    copy = tmp_path / "db"
    shutil.copytree(db, copy)
    # (this index's log is not all applied: pretend a segment is, to see the gate)
    monkeypatch.setattr(snapshot, "settled_vector_segments", lambda _con: {"segment"})
    assert snapshot._settled_segments(copy / "chroma.sqlite3") == {"segment"}  # linked
    monkeypatch.setattr(chroma_format, "_release", [])
    monkeypatch.setattr(chroma_format, "_told", [])
    monkeypatch.setattr(chroma_format, "installed_chromadb", lambda: "1.6.0")
    caplog.set_level(logging.DEBUG, logger="clipseek")
    reader = Store(copy, reader=True, direct=True)
    index = reader.open_index(KEY, SLUG)
    assert index is not None and not isinstance(index, DirectIndex)
    assert index.query(vectors[2], 1)[0].path.endswith("img_00002.jpg")
    assert reader.peek_indexes() is None
    assert snapshot._settled_segments(copy / "chroma.sqlite3") == set()
    Store(copy, reader=True, direct=True).open_index(KEY, SLUG)
    said = [r.getMessage() for r in caplog.records if "outside the range" in r.getMessage()]
    assert len(said) == 1 and "chromadb 1.6.0" in said[0], said
    assert chroma_format.TESTED_REQUIREMENT in said[0]
    reader.close()


@pytest.mark.parametrize(
    ("found", "known"),
    [("1.5.0", True), ("1.5.9", True), ("1.4.1", False), ("1.6.0", False), ("1.6.0rc1", False)],
)
def test_the_range_compares_release_numbers(monkeypatch, found: str, known: bool) -> None:
    monkeypatch.setattr(chroma_format, "_release", [])
    monkeypatch.setattr(chroma_format, "_told", [])
    monkeypatch.setattr(chroma_format, "TESTED_RANGE", ("1.5.0", "1.6"))
    monkeypatch.setattr(chroma_format, "installed_chromadb", lambda: found)
    assert chroma_format.release_known() is known
