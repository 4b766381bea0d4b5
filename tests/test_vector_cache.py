"""Issue 24: near-duplicate groups that never chain, and the vector cache beside Chroma
(store/vector_cache.py): the same answers as Chroma and the direct reader, ignored when
missing, stale or damaged, and never written by a reader."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from clipseek.search import duplicates as dup

# --------------------------------------------------------------------------- duplicates


class _Vectors:
    """A stand-in index: what ``find_duplicates`` asks of one (all_vectors, query_many)."""

    def __init__(self, vectors: np.ndarray, sizes: Sequence[int] | None = None) -> None:
        self.vectors = vectors.astype(np.float32)
        self.ids = [f"id{i:03d}" for i in range(len(vectors))]
        sizes = sizes or [100] * len(vectors)
        self.metas = [
            {"path": f"/p/{i:03d}.jpg", "width": w, "height": 10, "size": 1}
            for i, w in enumerate(sizes)
        ]

    def all_vectors(self, under: str | None = None) -> tuple[list[str], np.ndarray, list[Any]]:
        return self.ids, self.vectors, self.metas

    def query_many(self, vectors: np.ndarray, n: int, under: str | None = None) -> list[Any]:
        sims = vectors @ self.vectors.T
        out = []
        for row in sims:
            top = np.argsort(-row, kind="stable")[:n]
            out.append([(self.ids[j], float(row[j])) for j in top])
        return out


def test_close_pairs_in_tiles_are_every_close_pair(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 16)).astype(np.float32)
    vectors[1::37] = vectors[0::37][: len(vectors[1::37])]
    vectors += 0.02 * rng.standard_normal(vectors.shape).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    monkeypatch.setattr(dup, "_EXACT_BLOCK", 170)
    monkeypatch.setattr(dup, "_COLUMN_BLOCK", 450)
    left, right = dup._close_pairs(vectors, 0.95)
    i, j = np.nonzero(np.triu(vectors @ vectors.T >= 0.95, 1))
    assert len(i) >= 81
    assert sorted(zip(left.tolist(), right.tolist(), strict=True)) == sorted(
        zip(i.tolist(), j.tolist(), strict=True)
    )


def _chain(rng: np.random.Generator, length: int, step: float, dim: int = 64) -> np.ndarray:
    """Unit vectors along a great circle, ``step`` radians apart: neighbours are close,
    the ends far apart (A close to B, B close to C, A not close to C)."""
    a = rng.standard_normal(dim)
    a /= np.linalg.norm(a)
    b = rng.standard_normal(dim)
    b -= a * (a @ b)
    b /= np.linalg.norm(b)
    angles = np.arange(length) * step
    return np.cos(angles)[:, None] * a + np.sin(angles)[:, None] * b


def _assert_no_chains(groups: list[dup.DuplicateGroup], index: _Vectors, threshold: float) -> None:
    position = {id_: i for i, id_ in enumerate(index.ids)}
    seen: set[str] = set()
    for group in groups:
        rows = [position[item.id] for item in group.items]
        sims = index.vectors[rows] @ index.vectors[rows].T
        assert sims.min() >= threshold - 1e-6, sims.min()  # every pair, so the first too
        assert group.items[0].similarity == pytest.approx(1.0, abs=1e-6)
        assert not seen & {i.id for i in group.items}  # a picture is in one group only
        seen |= {i.id for i in group.items}


@pytest.mark.parametrize("exact", [True, False])
def test_near_duplicates_never_chain(monkeypatch, exact: bool) -> None:
    rng = np.random.default_rng(3)
    threshold = 0.95
    step = 0.25  # cos 0.25 = 0.969 between neighbours, cos 0.5 = 0.878 two apart
    chain = _chain(rng, 12, step)
    pair = _chain(rng, 2, 0.1)  # a plain pair, close: one group of two
    far = rng.standard_normal((30, 64))
    far /= np.linalg.norm(far, axis=1, keepdims=True)
    index = _Vectors(np.concatenate([chain, pair, far]))
    if not exact:
        monkeypatch.setattr(dup, "EXACT_LIMIT", 0)
    groups = dup.find_duplicates(index, threshold)  # type: ignore[arg-type]
    _assert_no_chains(groups, index, threshold)
    chain_groups = [g for g in groups if all(int(i.id[2:]) < 12 for i in g.items)]
    # Joined transitively, the twelve were one group with ends at cos 2.75 = -0.92.
    assert len(chain_groups) >= 6 and all(len(g.items) == 2 for g in chain_groups)
    assert sorted(i.id for g in groups for i in g.items if i.id in ("id012", "id013")) == [
        "id012",
        "id013",
    ]
    assert not [g for g in groups if any(int(i.id[2:]) >= 14 for i in g.items)]


def test_a_burst_is_one_group_led_by_the_largest_picture() -> None:
    rng = np.random.default_rng(5)
    centre = rng.standard_normal(64)
    centre /= np.linalg.norm(centre)
    burst = centre + 0.02 * rng.standard_normal((6, 64))
    burst /= np.linalg.norm(burst, axis=1, keepdims=True)
    index = _Vectors(burst, sizes=[100, 100, 300, 100, 200, 100])
    (group,) = dup.find_duplicates(index, 0.95)  # type: ignore[arg-type]
    assert len(group.items) == 6
    assert group.items[0].id == "id002" and group.items[1].id == "id004"
    _assert_no_chains([group], index, 0.95)


def test_a_chain_through_a_large_middle_picture_keeps_the_threshold() -> None:
    """A - B - C with B the largest: B leads; A and C are not both with it."""
    rng = np.random.default_rng(8)
    chain = _chain(rng, 3, 0.28)  # A.B = B.C = 0.961, A.C = 0.848
    index = _Vectors(chain, sizes=[100, 500, 100])
    groups = dup.find_duplicates(index, 0.95)  # type: ignore[arg-type]
    assert len(groups) == 1 and len(groups[0].items) == 2
    assert groups[0].items[0].id == "id001"
    _assert_no_chains(groups, index, 0.95)


# --------------------------------------------------------------------------- the cache

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

from clipseek.store import COLLECTION_PREFIX, Store  # noqa: E402
from clipseek.store import vector_cache as vc  # noqa: E402
from clipseek.store.cache_build import refresh_caches  # noqa: E402
from clipseek.store.direct import DirectIndex  # noqa: E402
from clipseek.store.keys import path_id  # noqa: E402
from clipseek.store.where import where_of  # noqa: E402
from tests.support.engines import assert_same_answers  # noqa: E402
from tests.support.files import file_hashes  # noqa: E402
from tests.support.stores import DIM, FILTERS, KEY, NAME, SLUG  # noqa: E402
from tests.support.stores import record as _record  # noqa: E402
from tests.support.stores import unit_vectors as _unit  # noqa: E402


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """900 records with their cache written, then changes the writer mirrors into it:
    40 replaced vectors, 25 deletions and 30 new records."""
    db = tmp_path_factory.mktemp("cache") / "db"
    rng = np.random.default_rng(17)
    vectors = _unit(rng, 960)
    store = Store(db)
    index = store.create_index(KEY, NAME, SLUG, DIM)
    for start in range(0, 900, 150):
        index.upsert([_record(i, vectors[i]) for i in range(start, start + 150)])
    index.add_roots(["/photos"])
    assert refresh_caches(db) == [COLLECTION_PREFIX + SLUG]
    assert refresh_caches(db) == []  # current: nothing to write
    assert len(vc.cached_collections(db)) == 1
    replaced = _unit(rng, 40)
    index.upsert([_record(i, replaced[n]) for n, i in enumerate(range(100, 140))])
    vectors[100:140] = replaced
    index.delete([path_id(_record(i, vectors[i]).path) for i in range(500, 525)])
    index.upsert([_record(i, vectors[i]) for i in range(900, 930)])
    store.close()
    return db, vectors


def _copy(db: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "db"
    shutil.copytree(db, copy)
    return copy


def _readers(db: Path) -> tuple[DirectIndex, DirectIndex, Any]:
    """The direct reader over the cache, the direct reader over Chroma's files (its cache
    refused), and Chroma."""
    cached = Store(db, reader=True, direct=True).open_index(KEY, SLUG)
    files = Store(db, reader=True, direct=True).open_index(KEY, SLUG)
    chroma = Store(db, reader=True).open_index(KEY, SLUG)
    assert isinstance(cached, DirectIndex) and isinstance(files, DirectIndex)
    files.cache_refused = "test"
    files._vectors = None
    return cached, files, chroma


def _files(db: Path) -> vc.CacheFiles:
    (collection_id,) = vc.cached_collections(db)
    return vc.cache_folder(db, collection_id)


def _manifest(db: Path) -> vc.Manifest:
    return vc.read_manifest(_files(db))


def test_the_writer_keeps_the_cache_current_by_appending(cached) -> None:
    db, _ = cached
    manifest = _manifest(db)
    assert manifest.rows == 900 + 40 + 30 and manifest.dead == 40 + 25
    assert manifest.live == 905
    cached_reader, _, _ = _readers(db)
    assert cached_reader.count() == 905 and cached_reader.from_cache
    assert cached_reader.cache_note is None


@pytest.mark.parametrize(("under", "clauses"), FILTERS)
def test_answers_through_the_cache_equal_chroma_and_the_files(
    cached, under, clauses, monkeypatch
) -> None:
    monkeypatch.setattr(vc, "WINDOW_BYTES", DIM * 4 * 128)  # scanned 128 rows at a time
    db, vectors = cached
    through_cache, through_files, chroma = _readers(db)
    rng = np.random.default_rng(len(clauses) + len(under or ""))
    queries = [*_unit(rng, 3), vectors[120], vectors[7], vectors[915]]
    for query in queries:
        for n in (1, 10, 2000):
            got = through_cache.query(query, n, under=under, clauses=clauses)
            files = through_files.query(query, n, under=under, clauses=clauses)
            want = chroma._exact(query, n, where_of(under, clauses, chroma.schema))
            assert [h.id for h in got] == [h.id for h in want] == [h.id for h in files]
            assert np.allclose([h.score for h in got], [h.score for h in want], atol=1e-5)
            assert [dict(h.metadata) for h in got] == [dict(h.metadata) for h in want]
    assert through_cache.from_cache and not through_files.from_cache
    assert through_cache.unavailable is None and through_files.unavailable is None
    # deleted records are never answered, though their rows are still in the file
    assert not [h for h in through_cache.query(vectors[510], 2000) if "img_00510" in h.path]


def test_get_and_lookup_through_the_cache_equal_chromas(cached) -> None:
    db, vectors = cached
    through_cache, _, chroma = _readers(db)
    ids = [path_id(_record(i, vectors[i]).path) for i in (0, 120, 510, 777, 920)] + ["nope"]
    got, want = through_cache.get(ids), chroma.get(ids)
    assert sorted(got) == sorted(want) and len(got) == 4
    for id_ in got:
        assert np.allclose(got[id_][0], want[id_][0], atol=1e-6)
        assert dict(got[id_][1]) == dict(want[id_][1])
    assert through_cache.lookup(ids) == chroma.lookup(ids)
    assert through_cache.from_cache


def test_a_reader_never_writes_the_cache(cached) -> None:
    db, vectors = cached

    before = file_hashes(db)
    through_cache, _, _ = _readers(db)
    through_cache.query(vectors[1], 10, under="/photos/2021", clauses=[{"camera": "Pixel 8"}])
    through_cache.get(["x"])
    assert through_cache.from_cache and file_hashes(db) == before


def _damage(folder: vc.CacheFiles, how: str) -> None:
    if how == "flipped":
        path = folder / "vectors.f32"
        data = bytearray(path.read_bytes())
        data[DIM * 4 * 3 + 5] ^= 0x40  # a bit of row 3: still a plausible number
        path.write_bytes(bytes(data))
    elif how == "truncated":
        path = folder / "vectors.f32"
        path.write_bytes(path.read_bytes()[: DIM * 4 * 10])
    elif how == "manifest":
        (folder / vc.MANIFEST).write_text('{"format": 1, "rows": "many"}')
    elif how == "rowids":
        path = folder / "rowids.i64"
        data = bytearray(path.read_bytes())
        data[8 * 7] ^= 0x01  # row 7 now names another record
        path.write_bytes(bytes(data))
    elif how == "missing":
        vc.drop_cache(folder.base, folder.stem[len(vc.CACHE_PREFIX) :])


@pytest.mark.parametrize("how", ["flipped", "truncated", "manifest", "rowids", "missing"])
def test_a_damaged_or_missing_cache_is_passed_over(
    cached, tmp_path: Path, how: str, monkeypatch
) -> None:
    monkeypatch.setattr(vc, "WINDOW_BYTES", DIM * 4 * 100)
    db, vectors = _copy(cached[0], tmp_path), cached[1]
    folder = _files(db)
    _damage(folder, how)
    through_cache, _, chroma = _readers(db)
    for i in (3, 7, 120, 915):
        got = through_cache.query(vectors[i], 10)
        want = chroma._exact(vectors[i], 10, None)
        assert [h.id for h in got] == [h.id for h in want]
        assert got[0].path.endswith(f"img_{i:05d}.jpg")
    assert not through_cache.from_cache and through_cache.unavailable is None
    assert through_cache.count() == 905


@pytest.mark.slow  # a child process
def test_check_finds_a_damaged_cache_and_repair_rebuilds_only_it(cached, tmp_path: Path) -> None:
    from clipseek.store.repair import check, repair

    db = _copy(cached[0], tmp_path)
    store = Store(db)
    assert check(store, self_search=False).healthy
    folder = _files(db)
    _damage(folder, "flipped")
    report = check(store, self_search=False)
    assert not report.healthy and report.only_cache, report.problems
    assert "vector cache" in report.sentence() and "repair" in report.sentence()
    repaired = repair(store, before=report)
    assert repaired is not None and repaired.cache_only and repaired.moved_to is None
    assert "vector cache" in repaired.sentence()
    assert check(store, self_search=False).healthy
    through_cache, _, _ = _readers(db)
    assert through_cache.count() == 905 and through_cache.from_cache


def test_a_stale_cache_is_passed_over_and_the_next_refresh_catches_up(
    cached, tmp_path: Path, monkeypatch
) -> None:
    db, _ = cached
    db = _copy(db, tmp_path)
    writer = Store(db)
    index = writer.open_index(KEY, SLUG)
    assert index is not None
    fresh = _unit(np.random.default_rng(23), 1)[0]
    with monkeypatch.context() as patch:  # a write the cache does not hear of
        patch.setattr(vc._Journal, "mark", lambda self, ids: None)
        index.upsert([_record(5000, fresh)])
    writer.close()
    reader = Store(db, reader=True, direct=True).open_index(KEY, SLUG)
    assert isinstance(reader, DirectIndex)
    top = reader.query(fresh, 1)[0]
    assert top.path.endswith("img_05000.jpg") and top.score == pytest.approx(1.0, abs=1e-5)
    assert not reader.from_cache and reader.cache_note == "the cache is behind the index"
    assert refresh_caches(db) == [COLLECTION_PREFIX + SLUG]
    again = Store(db, reader=True, direct=True).open_index(KEY, SLUG)
    assert isinstance(again, DirectIndex)
    assert again.query(fresh, 1)[0].path.endswith("img_05000.jpg") and again.from_cache


def test_a_reader_follows_the_writer_reading_only_what_was_appended(
    cached, tmp_path: Path, monkeypatch
) -> None:
    db = _copy(cached[0], tmp_path)
    reader = Store(db, reader=True, direct=True)
    index = reader.open_index(KEY, SLUG)
    assert isinstance(index, DirectIndex) and index.from_cache
    first_view = index._vectors.view  # type: ignore[union-attr]
    first_view.verified = True
    read_from: list[int] = []
    original = vc.CacheView.verify

    def spy(self: vc.CacheView, first_row: int = 0, crc: int = 0) -> None:
        read_from.append(first_row)
        original(self, first_row, crc)

    monkeypatch.setattr(vc.CacheView, "verify", spy)
    writer = Store(db)
    fresh = _unit(np.random.default_rng(31), 3)
    target = writer.open_index(KEY, SLUG)
    assert target is not None
    target.upsert([_record(6000 + n, v) for n, v in enumerate(fresh)])
    writer.close()
    # As if the files were not the writer's own (a copied folder): their checksum counts.
    folder = _files(db)
    manifest = vc.read_manifest(folder)
    manifest.identities = [[0, 0, 0, 0]] * 3
    (folder / vc.MANIFEST).write_bytes(manifest.encode())
    assert reader.changed()
    reader.catch_up()
    assert index.query(fresh[2], 1)[0].path.endswith("img_06002.jpg")
    assert index.from_cache and index.count() == 908
    # only the appended rows were read and checked, not the whole file again
    assert read_from == [first_view.manifest.rows] and index._vectors.view.verified  # type: ignore[union-attr]


def test_deleting_many_writes_the_cache_anew(cached, tmp_path: Path) -> None:
    db, vectors = cached
    db = _copy(db, tmp_path)
    before = _manifest(db)
    writer = Store(db)
    index = writer.open_index(KEY, SLUG)
    assert index is not None
    for start in range(0, 600, 100):
        index.delete([path_id(_record(i, vectors[i]).path) for i in range(start, start + 100)])
    writer.close()
    after = _manifest(db)
    # Fewer than 4096 dead rows: still appended (the threshold keeps small caches simple).
    assert after.epoch == before.epoch and after.live == 905 - 575
    through_cache, _, chroma = _readers(db)
    assert through_cache.count() == chroma.count() == 330
    got = through_cache.query(vectors[700], 5)
    assert [h.id for h in got] == [h.id for h in chroma._exact(vectors[700], 5, None)]
    assert through_cache.from_cache


def test_compaction_keeps_the_answers(cached, tmp_path: Path, monkeypatch) -> None:
    db, vectors = cached
    db = _copy(db, tmp_path)
    monkeypatch.setattr(vc, "_COMPACT_MIN", 10)
    before = _manifest(db)
    writer = Store(db)
    index = writer.open_index(KEY, SLUG)
    assert index is not None
    index.delete([path_id(_record(i, vectors[i]).path) for i in range(0, 300)])
    writer.close()
    after = _manifest(db)
    assert after.epoch != before.epoch and after.dead == 0 and after.rows == 905 - 300
    through_cache, _, chroma = _readers(db)
    for i in (400, 915):
        got = through_cache.query(vectors[i], 7)
        assert [h.id for h in got] == [h.id for h in chroma._exact(vectors[i], 7, None)]
    assert through_cache.from_cache


def test_duplicates_through_the_cache_equal_chromas(cached, tmp_path: Path) -> None:
    db, vectors = cached
    db = _copy(db, tmp_path)
    writer = Store(db)
    index = writer.open_index(KEY, SLUG)
    assert index is not None
    rng = np.random.default_rng(41)
    # near copies; 7000 and 7004 land in /photos/2020 beside their originals 4 and 12
    near = vectors[[4, 4, 8, 11, 12, 0, 0, 0]]
    near = near + 0.03 * rng.standard_normal(near.shape).astype(np.float32)
    index.upsert([_record(7000 + n, v) for n, v in enumerate(near)])
    writer.close()
    through_cache, _, chroma = _readers(db)
    source = dup.vector_source(through_cache)  # type: ignore[arg-type]
    assert through_cache.from_cache and len(source.vectors) == 913
    for under in (None, "/photos/2020"):
        got = dup.find_duplicates(through_cache, 0.9, under=under)  # type: ignore[arg-type]
        want = dup.find_duplicates(chroma, 0.9, under=under)
        assert [[i.id for i in g.items] for g in got] == [[i.id for i in g.items] for g in want]
        assert got and all(len(g.items) >= 2 for g in got)


@pytest.mark.slow  # a child process
def test_check_searches_a_stated_sample_unless_asked_for_everything(cached, tmp_path) -> None:
    from clipseek.store.repair import check

    db = _copy(cached[0], tmp_path)
    sampled = check(Store(db, create=False), sample=50)
    assert sampled.healthy and sampled.sampled, sampled.problems
    # healthy: below 500 searched vectors no miss is tolerated (repair.tolerated_misses)
    assert sampled.found_self == 50 and sampled.records == 905
    assert "50 vectors chosen at random" in sampled.sentence() and "--full" in sampled.sentence()
    # HNSW's search is approximate: even after a wider second look a sound graph may miss a
    # vector of 905, which check reports as healthy (a CI run saw 1 at ten neighbours)
    everything = check(Store(db, create=False))
    assert everything.healthy and not everything.sampled, everything.problems
    assert everything.found_self + everything.missed_self == 905


def test_an_index_run_writes_the_cache_and_queries_read_it(engine, photos: Path, settings) -> None:
    from clipseek.engine import Engine

    engine.index([photos])
    assert len(vc.cached_collections(engine.store.location)) == 1
    direct = Engine(settings, model_loader=engine._model_loader, direct=True)
    assert_same_answers(engine, direct, ("a red circle", "a city at night"))
    index = direct.open_index()
    assert isinstance(index, DirectIndex) and index.from_cache
    # `clipseek duplicates` reads through the cache too, with Chroma's groups
    chroma_groups = dup.find_duplicates(engine.open_index(), 0.9)
    got = [[i.id for i in g.items] for g in engine.duplicates(0.9)]
    assert got == [[i.id for i in g.items] for g in dup.existing_only(chroma_groups)]
