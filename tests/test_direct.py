"""The direct reader (store/direct.py): Chroma's answers, from Chroma's files, without
chromadb; anything it does not know goes to Chroma; it never writes."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clipseek.store import Record, Store
from clipseek.store.direct import DirectIndex

DIM = 24
KEY, NAME, SLUG = "test-model-key", "test-model", "test-slug"
CAMERAS = ["Canon EOS R5", "Pixel 8", "iPhone 15 Pro"]


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _record(i: int, vector: np.ndarray) -> Record:
    extra: dict[str, Any] = {}
    if i % 3:  # some pictures have no date or camera, as older indexes do
        extra = {"taken_local": 1_600_000_000 + i * 86_400, "camera": CAMERAS[i % 3]}
    return Record(
        f"/photos/{2020 + i % 4}/trip-{i % 7}/img_{i:05d}.jpg",
        vector,
        1000 + i,
        10**18 + i,
        640 + 10 * (i % 50),
        480,
        extra,
    )


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


FILTERS: list[tuple[str | None, list[dict[str, Any]]]] = [
    (None, []),
    ("/photos/2021", []),
    ("/photos/2022/trip-3", []),
    (None, [{"taken_local": {"$gte": 1_600_000_000 + 300 * 86_400}}]),
    (None, [{"taken_local": {"$lt": 1_600_000_000 + 200 * 86_400}}, {"width": {"$gte": 900}}]),
    (None, [{"camera": "Pixel 8"}]),
    ("/photos/2023", [{"camera": {"$in": ["Canon EOS R5", "iPhone 15 Pro"]}}]),
    ("/photos/2020", [{"camera": "no such camera"}]),
]


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

    def state() -> list[tuple[str, str]]:
        return sorted(
            (str(p.relative_to(db)), hashlib.sha1(p.read_bytes()).hexdigest())
            for p in db.rglob("*")
            if p.is_file()
        )

    before = state()
    direct, _ = _direct_and_chroma(db)
    direct.query(vectors[1], 10, under="/photos/2021", clauses=[{"camera": "Pixel 8"}])
    direct.get(["x"])
    assert state() == before


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
    for text in ("a red circle", "a city at night"):
        want = engine.search(text, 5)
        got = direct.search(text, 5)
        assert [r.path for r in got.results] == [r.path for r in want.results]
        assert [r.score for r in got.results] == pytest.approx(
            [r.score for r in want.results], abs=1e-6
        )
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


def test_scores_are_cosines_whatever_length_was_stored(built, tmp_path: Path) -> None:
    import shutil

    db, _ = built
    copy = tmp_path / "db"
    shutil.copytree(db, copy)
    writer = Store(copy)
    index = writer.open_index(KEY, SLUG)
    assert index is not None
    direction = _unit(np.random.default_rng(21), 1)[0]
    index.upsert([_record(8000, 3.0 * direction)])  # in the write log as written
    writer.close()
    direct, chroma = _direct_and_chroma(copy)
    got, want = direct.query(direction, 3), chroma._exact(direction, 3, None)
    assert got[0].path.endswith("img_08000.jpg") and got[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.id for h in got] == [h.id for h in want]
