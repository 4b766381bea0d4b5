"""Issue 24: the approximate index beside the vector cache (store/partition.py). A long-lived
reader answers unfiltered searches from it like the exact scan on clustered data, honours
rows appended or deleted since it was built, passes over a damaged or stale one, never
writes it; near-duplicates split their search by its centres and still never chain."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from clipseek.search import duplicates as dup
from clipseek.store import Store
from clipseek.store import partition as ivf
from clipseek.store import vector_cache as vc
from clipseek.store.cache_build import refresh_caches
from clipseek.store.direct import DirectIndex
from clipseek.store.keys import path_id
from tests.support.files import file_hashes
from tests.support.stores import KEY, NAME, SLUG
from tests.support.stores import record as _record

DIM = 32
ROWS = 1600
#: Low enough that the test's small cache gets a partition (the default is 100,000).
MIN_ROWS = 500


def _clustered(rng: np.random.Generator, n: int, centres: int = 40) -> np.ndarray:
    """Unit vectors around ``centres`` directions, as photo embeddings cluster."""
    means = rng.standard_normal((centres, DIM))
    rows = means[rng.integers(0, centres, n)] + 0.5 * rng.standard_normal((n, DIM))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """1,600 clustered records, their cache and its partition."""
    db = tmp_path_factory.mktemp("partition") / "db"
    vectors = _clustered(np.random.default_rng(5), ROWS)
    store = Store(db)
    index = store.create_index(KEY, NAME, SLUG, DIM)
    for start in range(0, ROWS, 400):
        index.upsert([_record(i, vectors[i]) for i in range(start, start + 400)])
    store.close()
    refresh_caches(db, partition_min=MIN_ROWS)
    return db, vectors


def _copy(db: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "db"
    shutil.copytree(db, copy)
    return copy


def _files(db: Path) -> vc.CacheFiles:
    (collection_id,) = vc.cached_collections(db)
    return vc.cache_folder(db, collection_id)


def _reader(db: Path, approximate: bool = True) -> DirectIndex:
    index = Store(db, reader=True, direct=True, approximate=approximate).open_index(KEY, SLUG)
    assert isinstance(index, DirectIndex)
    return index


def _queries(vectors: np.ndarray, count: int = 30) -> np.ndarray:
    """Queries near stored pictures (a text or image query lands near a cluster)."""
    rng = np.random.default_rng(11)
    base = vectors[rng.integers(0, len(vectors), count)]
    noisy = base + 0.3 * rng.standard_normal(base.shape).astype(np.float32) / np.sqrt(DIM)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def _same(got: list, want: list) -> None:
    assert [h.id for h in got] == [h.id for h in want]
    assert np.allclose([h.score for h in got], [h.score for h in want], atol=1e-6)


def _check(db: Path) -> str | None:
    from clipseek.store.chroma_format import connect_readonly
    from clipseek.store.direct import clipseek_collections

    con = connect_readonly(db / "chroma.sqlite3")
    try:
        (collection,) = clipseek_collections(con)
        return ivf.check_partition(db, collection.id, collection.metadata_segment, DIM, con)
    finally:
        con.close()


def test_the_partition_is_built_past_the_threshold_and_covers_every_row(built) -> None:
    db, _ = built
    folder = _files(db)
    manifest = ivf.read_manifest(folder)
    assert manifest.rows == manifest.count == ROWS
    assert manifest.lists == ivf.list_count(ROWS)
    assert manifest.epoch == vc.read_manifest(folder).epoch
    view = _reader(db)._read().view  # type: ignore[union-attr]
    assert ivf.verify_partition(view) is None and _check(db) is None
    assert not ivf.wanted(view, MIN_ROWS)  # current: an index run leaves it be


def test_no_partition_under_the_threshold(built, tmp_path: Path) -> None:
    db = _copy(built[0], tmp_path)
    (collection_id,) = vc.cached_collections(db)
    ivf.drop_partition(db, collection_id)
    refresh_caches(db)  # the default threshold: far above 1,600 rows
    assert not (_files(db) / ivf.MANIFEST).exists()
    reader = _reader(db)
    reader.query(built[1][0], 10)
    assert not reader.from_partition and reader.partition_note == "no partition"


def test_approximate_answers_equal_the_exact_scan(built) -> None:
    db, vectors = built
    approximate, exact = _reader(db), _reader(db, approximate=False)
    for query in [*_queries(vectors), vectors[3], vectors[1500]]:
        got = approximate.query(query, 10)
        assert approximate.from_partition, approximate.partition_note
        _same(got, exact.query(query, 10))
        assert not exact.from_partition
    assert approximate.query(vectors[42], 1)[0].path.endswith("img_00042.jpg")


def test_filters_and_large_answers_stay_exact(built) -> None:
    db, vectors = built
    approximate, exact = _reader(db), _reader(db, approximate=False)
    query = _queries(vectors, 1)[0]
    for under, clauses in (("/photos/2021", []), (None, [{"width": {"$gte": 900}}])):
        got = approximate.query(query, 10, under=under, clauses=clauses)
        assert not approximate.from_partition
        _same(got, exact.query(query, 10, under=under, clauses=clauses))
    got = approximate.query(query, 500)  # more than the lists near it hold
    assert not approximate.from_partition and len(got) == 500
    _same(got, exact.query(query, 500))


def test_rows_appended_and_deleted_after_the_build_are_honoured(built, tmp_path: Path) -> None:
    db, vectors = built
    db = _copy(db, tmp_path)
    target = vectors[7]
    reader = _reader(db)
    best = reader.query(target, 3)
    assert best[0].path.endswith("img_00007.jpg") and reader.from_partition
    writer = Store(db)
    index = writer.open_index(KEY, SLUG)
    assert index is not None
    # the best hit goes, and a near copy of it arrives (the cache's tail)
    index.delete([path_id(_record(7, target).path)])
    twin = target + 0.01 * np.random.default_rng(2).standard_normal(DIM).astype(np.float32)
    index.upsert([_record(9000, twin / np.linalg.norm(twin))])
    writer.close()
    manifest = vc.read_manifest(_files(db))
    assert manifest.rows == ROWS + 1 and manifest.dead == 1  # appended, not written anew
    exact = _reader(db, approximate=False)
    for query in (target, *_queries(vectors, 10)):
        got = reader.query(query, 10)
        assert reader.from_partition, reader.partition_note
        _same(got, exact.query(query, 10))
        assert not [h for h in got if h.path.endswith("img_00007.jpg")]
    assert reader.query(target, 1)[0].path.endswith("img_09000.jpg")


def _damage(db: Path, how: str) -> None:
    folder = _files(db)
    if how == "rows":
        path = folder / "ivf-rows.bf16"
        data = bytearray(path.read_bytes())
        data[DIM * 2 * 5 + 3] ^= 0x40
        path.write_bytes(bytes(data))
    elif how == "truncated":
        path = folder / "ivf-rows.bf16"
        path.write_bytes(path.read_bytes()[: DIM * 2 * 10])
    elif how == "centroids":
        path = folder / "ivf-centroids.f32"
        data = bytearray(path.read_bytes())
        data[17] ^= 0x01
        path.write_bytes(bytes(data))
    elif how == "manifest":
        (folder / ivf.MANIFEST).write_text('{"format": 1, "lists": -3}')
    elif how == "stale":
        # the cache written anew (its positions may differ): the partition names the old one
        saved = {part: (folder / part).read_bytes() for part in ivf.PARTS}
        (collection_id,) = vc.cached_collections(db)
        vc.drop_cache(db, collection_id)  # the partition goes with it
        refresh_caches(db)  # the default threshold: the cache only
        for part, data in saved.items():
            (folder / part).write_bytes(data)


@pytest.mark.parametrize("how", ["rows", "truncated", "centroids", "manifest", "stale"])
def test_a_damaged_or_stale_partition_is_passed_over(built, tmp_path: Path, how: str) -> None:
    db, vectors = _copy(built[0], tmp_path), built[1]
    _damage(db, how)
    reader, exact = _reader(db), _reader(db, approximate=False)
    for query in (*_queries(vectors, 5), vectors[3]):
        _same(reader.query(query, 10), exact.query(query, 10))
        assert not reader.from_partition and reader.partition_note
    assert reader.from_cache and reader.unavailable is None
    view = reader._read().view  # type: ignore[union-attr]
    problem = ivf.verify_partition(view)
    assert problem == _check(db)  # what `clipseek check` will call
    if how == "stale":
        assert problem is None  # the next index run builds it anew
        assert ivf.wanted(view, MIN_ROWS)
    else:
        assert problem is not None and "approximate index" in problem
    refresh_caches(db, partition_min=MIN_ROWS)  # an index run: built anew
    again = _reader(db)
    _same(again.query(vectors[3], 10), exact.query(vectors[3], 10))
    assert again.from_partition


def test_a_reader_never_writes_the_partition(built, tmp_path: Path) -> None:
    db = _copy(built[0], tmp_path)
    # as a copied folder: the files are not the writer's own, so the reader checks them
    manifest = ivf.read_manifest(_files(db))
    manifest.identities = [[0, 0, 0, 0]] * len(manifest.identities)
    (_files(db) / ivf.MANIFEST).write_bytes(manifest.encode())
    before = file_hashes(db)
    reader = _reader(db)
    for query in _queries(built[1], 5):
        reader.query(query, 10)
    assert reader.from_partition
    assert reader.partition_lists() is not None
    assert file_hashes(db) == before
    # the writer notes the identities once it checked them, so readers need not
    refresh_caches(db, partition_min=MIN_ROWS)
    assert ivf.read_manifest(_files(db)).identities != manifest.identities


def test_a_long_tail_makes_the_next_index_run_build_it_anew(built, tmp_path: Path) -> None:
    db = _copy(built[0], tmp_path)
    before = ivf.read_manifest(_files(db))
    writer = Store(db)
    index = writer.open_index(KEY, SLUG)
    assert index is not None
    extra = _clustered(np.random.default_rng(9), 200)
    index.upsert([_record(5000 + n, v) for n, v in enumerate(extra)])
    writer.close()
    view = _reader(db)._read().view  # type: ignore[union-attr]
    assert ivf.wanted(view, MIN_ROWS)  # 200 new rows > a tenth of 1,600
    refresh_caches(db, partition_min=MIN_ROWS)
    after = ivf.read_manifest(_files(db))
    assert after.rows == ROWS + 200 and after.count == ROWS + 200
    assert after.epoch == before.epoch  # the same cache, appended to
    reader, exact = _reader(db), _reader(db, approximate=False)
    _same(reader.query(extra[4], 10), exact.query(extra[4], 10))
    assert reader.from_partition


# --------------------------------------------------------------------------- duplicates


def _chain(rng: np.random.Generator, length: int, step: float) -> np.ndarray:
    """Unit vectors along a great circle, ``step`` radians apart (A~B, B~C, A not ~C)."""
    a = rng.standard_normal(DIM)
    a /= np.linalg.norm(a)
    b = rng.standard_normal(DIM)
    b -= a * (a @ b)
    b /= np.linalg.norm(b)
    angles = np.arange(length) * step
    return (np.cos(angles)[:, None] * a + np.sin(angles)[:, None] * b).astype(np.float32)


def _pairs(left: np.ndarray, right: np.ndarray) -> set[tuple[int, int]]:
    return set(zip(left.tolist(), right.tolist(), strict=True))


def test_partition_pairs_are_exact_without_a_cap_and_a_subset_with_one() -> None:
    rng = np.random.default_rng(4)
    vectors = _clustered(rng, 3000, centres=25)
    # copies of every tenth picture, from near-identical to about cos 0.9 away
    noise = rng.uniform(0.02, 0.08, (300, 1)) * rng.standard_normal((300, DIM))
    copies = vectors[::10] + noise.astype(np.float32)
    vectors = np.concatenate([vectors, copies / np.linalg.norm(copies, axis=1, keepdims=True)])
    sample = vectors[rng.choice(len(vectors), 1500, replace=False)]
    centroids = ivf.train_centroids(sample, 60)
    own = np.argmax(vectors @ centroids.T, axis=1)
    for threshold in (0.9, 0.95, 0.99):
        exact = _pairs(*dup._close_pairs(vectors, threshold))
        assert len(exact) >= 20
        if threshold < 0.99:  # pairs split between lists: the bound's work
            assert sum(own[a] != own[b] for a, b in exact) >= 5
        # the bound alone: every close pair, whatever the centres
        assert _pairs(*dup.partition_pairs(vectors, centroids, threshold, visits=59)) == exact
        capped = _pairs(*dup.partition_pairs(vectors, centroids, threshold, visits=1))
        assert capped <= exact and len(capped) >= 0.9 * len(exact)


def test_duplicates_through_the_partition_find_the_copies_and_split_chains(
    tmp_path: Path, monkeypatch
) -> None:
    rng = np.random.default_rng(21)
    vectors = _clustered(rng, 1200)
    originals = [10, 200, 450, 800]
    copies = vectors[originals] + 0.01 * rng.standard_normal((4, DIM)).astype(np.float32)
    chain = _chain(rng, 8, 0.25)  # neighbours at cos 0.969, two apart at 0.878
    everything = np.concatenate([vectors, copies / np.linalg.norm(copies, axis=1)[:, None], chain])
    db = tmp_path / "db"
    store = Store(db)
    index = store.create_index(KEY, NAME, SLUG, DIM)
    index.upsert([_record(i, v) for i, v in enumerate(everything)])
    store.close()
    refresh_caches(db, partition_min=MIN_ROWS)
    reader = _reader(db, approximate=False)  # duplicates use it whatever the reader
    centroids, lists = reader.partition_lists()  # type: ignore[misc]
    rows = np.asarray(dup.vector_source(reader).vectors)  # the rows duplicates compare
    assert len(lists) == len(rows) and (lists >= 0).all()
    assert (lists == np.argmax(rows @ centroids.T, axis=1)).mean() > 0.99
    monkeypatch.setattr(dup, "EXACT_LIMIT", 100)
    calls: list[int] = []
    found: list[tuple[np.ndarray, np.ndarray]] = []
    original = dup.partition_pairs

    def spy(*args, **kwargs):
        calls.append(kwargs["primary"] is not None)  # the lists as the partition stored them
        found.append(original(*args, **kwargs))
        return found[-1]

    monkeypatch.setattr(dup, "partition_pairs", spy)
    got = dup.find_duplicates(reader, 0.95)
    assert calls == [True]  # the partition's path, not the neighbour search
    # Above EXACT_LIMIT the pair search is approximate (at most VISITS other lists): a pair
    # whose lists lie past the cap may be missed, never one made up. Pairs are compared, not
    # groups: one missed link of the chain moves where every later group of it is split.
    exact_pairs, got_pairs = _pairs(*dup._close_pairs(rows, 0.95)), _pairs(*found[0])
    assert got_pairs <= exact_pairs and len(got_pairs) >= 0.9 * len(exact_pairs)
    groups = [{int(Path(i.path).stem.split("_")[1]) for i in g.items} for g in got]
    for n, original in enumerate(originals):  # every planted copy beside its original
        assert any({original, 1200 + n} <= g for g in groups)
    # the chain is split: every member within the threshold of every other, none twice
    chained = [g for g in groups if g & set(range(1204, 1212))]
    assert len(chained) >= 3 and all(len(g) == 2 for g in chained)
    seen: set[int] = set()
    for members in groups:
        rows = sorted(members)
        sims = everything[rows] @ everything[rows].T
        assert sims.min() >= 0.95 - 1e-6
        assert not seen & members
        seen |= members
