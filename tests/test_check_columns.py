"""`clipseek check` reads an index by columns, a chunk of records at a time (issue 24):
the same findings as reading every record at once, wherever in the index the damage is,
and the self-search's sample handed to its child without a file left behind.

The chunks are made a few records long here, so that the damage planted at the end of
the index is in a later chunk than the first."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clipseek.store import Store, chroma_format, repair
from clipseek.store import records as chroma_store
from clipseek.store.cache_build import refresh_caches
from clipseek.store.keys import path_id
from tests.support.stores import DIM, KEY, NAME, SLUG, record, unit_vectors

COUNT = 120


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 records whose vector files are written (a small sync threshold), failures
    recorded between them (so the two collections' row ids interleave) and a vector
    cache."""
    db = tmp_path_factory.mktemp("columns") / "db"
    saved = dict(chroma_store.HNSW_CONFIG)
    chroma_store.HNSW_CONFIG.update(sync_threshold=10, batch_size=10)
    try:
        store = Store(db)
        index = store.create_index(KEY, NAME, SLUG, DIM)
        vectors = unit_vectors(np.random.default_rng(4), COUNT)
        for start in range(0, COUNT, 30):
            index.upsert([record(i, vectors[i]) for i in range(start, start + 30)])
            index.record_failures([(f"/photos/bad/broken_{start}.jpg", 10, 20, "unreadable")])
        store.close()
    finally:
        chroma_store.HNSW_CONFIG.clear()
        chroma_store.HNSW_CONFIG.update(saved)
    refresh_caches(db)
    return db


@pytest.fixture
def db(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "db"
    shutil.copytree(built, copy)
    monkeypatch.setattr(repair, "CHECK_CHUNK", 7)
    monkeypatch.setattr(repair, "_FILE_ROWS", 5)
    return copy


def _check(db: Path) -> repair.CheckReport:
    return repair.check(Store(db, create=False), self_search=False)


def _sql(db: Path, statement: str, *params: object) -> None:
    con = sqlite3.connect(db / "chroma.sqlite3")
    with con:
        con.execute(statement, params)
    con.close()


def _last_rowid(db: Path) -> int:
    """The row id of the main collection's last record: in the last chunk."""
    con = sqlite3.connect(db / "chroma.sqlite3")
    (rowid,) = con.execute(
        "SELECT MAX(e.id) FROM embeddings e JOIN segments s ON s.id = e.segment_id "
        "JOIN collections c ON c.id = s.collection WHERE s.scope = 'METADATA' "
        "AND c.name = ?",
        (chroma_store.COLLECTION_PREFIX + SLUG,),
    ).fetchone()
    con.close()
    return int(rowid)


def _collection_id(con: sqlite3.Connection) -> str:
    (collection_id,) = con.execute(
        "SELECT id FROM collections WHERE name = ?", (chroma_store.COLLECTION_PREFIX + SLUG,)
    ).fetchone()
    return str(collection_id)


def _segment(db: Path) -> Path:
    """The main collection's vector folder (the failures' vectors have one dimension)."""
    for folder in db.iterdir():
        if (folder / "header.bin").exists():
            head = chroma_format.hnsw_header(folder)
            if head.dim == DIM:
                return folder
    raise AssertionError("no vector folder")


def test_a_healthy_index_checks_clean_in_chunks_of_a_few_records(db: Path) -> None:
    report = _check(db)
    assert report.healthy, report.problems
    assert report.records == COUNT


def test_a_record_whose_id_does_not_match_its_path_is_found_in_a_later_chunk(db: Path) -> None:
    _sql(
        db,
        "UPDATE embedding_metadata SET string_value = '/photos/elsewhere.jpg' "
        "WHERE id = ? AND key = 'path'",
        _last_rowid(db),
    )
    report = _check(db)
    assert report.problems == [
        f"1 records of {chroma_store.COLLECTION_PREFIX}{SLUG} have metadata that does not "
        "match their path."
    ]


@pytest.mark.parametrize(
    "damage",
    [
        "DELETE FROM embedding_metadata_array WHERE id = ? AND key = 'dirs' AND rowid = "
        "(SELECT MAX(rowid) FROM embedding_metadata_array WHERE id = ?)",
        "UPDATE embedding_metadata SET string_value = '12', int_value = NULL "
        "WHERE id = ? AND key = 'size' AND ? IS NOT NULL",
        "UPDATE embedding_metadata SET string_value = 'x' || string_value "
        "WHERE id = ? AND key = 'path' AND ? IS NOT NULL",
    ],
    ids=["a folder missing", "size as text", "path text"],
)
def test_metadata_that_does_not_match_the_path_is_found_in_a_later_chunk(
    db: Path, damage: str
) -> None:
    rowid = _last_rowid(db)
    _sql(db, damage, rowid, rowid)
    report = _check(db)
    assert len(report.problems) == 1 and "does not match their path" in report.problems[0]
    assert report.problems[0].startswith("1 records")


def test_a_non_unit_vector_in_a_later_chunk_is_named(db: Path) -> None:
    seg = _segment(db)
    head = chroma_format.hnsw_header(seg)
    element = head.count - 2
    with (seg / "data_level0.bin").open("r+b") as fh:
        fh.seek(element * head.per_element + head.label_offset)
        (label,) = np.frombuffer(fh.read(8), dtype="<u8")
        fh.seek(element * head.per_element + head.data_offset)
        fh.write(np.full(head.dim, 3.0, dtype="<f4").tobytes())
    labels, ids = chroma_format.label_table(seg) or (None, None)
    assert labels is not None and ids is not None
    record_id = ids[list(labels).index(int(label))].decode()
    (path,) = [
        record(i, np.zeros(DIM)).path
        for i in range(COUNT)
        if path_id(record(i, np.zeros(DIM)).path) == record_id
    ]
    report = _check(db)
    assert not report.healthy and report.repairable
    assert "data_level0.bin holds 1 stored vector" in report.problems[0], report.problems
    assert any(
        p.startswith("1 stored vector that is not a finite unit vector") and path in p
        for p in report.problems
    ), report.problems


def _mark_deleted(seg: Path, element: int) -> None:
    head = chroma_format.hnsw_header(seg)
    with (seg / "data_level0.bin").open("r+b") as fh:
        fh.seek(element * head.per_element)
        flags = int(np.frombuffer(fh.read(4), dtype="<u4")[0])
        fh.seek(element * head.per_element)
        fh.write(np.array([flags | (1 << 16)], dtype="<u4").tobytes())


def test_a_vector_marked_deleted_in_a_later_chunk_is_a_record_without_a_vector(
    db: Path,
) -> None:
    seg = _segment(db)
    _mark_deleted(seg, chroma_format.hnsw_header(seg).count - 1)
    report = _check(db)
    assert f"1 of {COUNT} records have no stored vector." in report.problems, report.problems


def test_an_applied_write_still_in_the_log_does_not_hide_a_deleted_vector(db: Path) -> None:
    """Chroma keeps the last write in its log after applying it, and replays only what the
    vector files have not applied: that record's damaged vector is missing all the same.
    (Chroma adds a batch's vectors in any order, so the last element was this record one
    time in ten, and CI found the check passing it over.)"""
    seg = _segment(db)
    con = sqlite3.connect(db / "chroma.sqlite3")
    try:
        collection_id = _collection_id(con)
        logged = chroma_format.logged_vectors(con, collection_id)
        applied = chroma_format.applied_seq(con, seg.name)
    finally:
        con.close()
    assert logged and applied is not None  # the fixture's last write is kept in the log
    labels, ids = chroma_format.label_table(seg) or (None, None)
    assert labels is not None and ids is not None
    label = int(labels[[i.decode() for i in ids].index(next(reversed(logged)))])
    rows = chroma_format.read_hnsw_rows(seg)
    _mark_deleted(seg, int(np.flatnonzero(rows.labels == label)[0]))
    report = _check(db)
    assert f"1 of {COUNT} records have no stored vector." in report.problems, report.problems


def test_a_vector_whose_record_is_gone_belongs_to_no_record(db: Path) -> None:
    rowid = _last_rowid(db)
    for table in ("embedding_metadata", "embedding_metadata_array", "embeddings"):
        _sql(db, f"DELETE FROM {table} WHERE id = ?", rowid)
    report = _check(db)
    assert "1 stored vectors belong to no record." in report.problems, report.problems
    assert report.records == COUNT - 1


def test_a_cache_vector_that_differs_in_a_later_block_is_found(db: Path) -> None:
    (manifest,) = db.glob("clipseek-vectors-*.manifest.json")
    vectors = Path(str(manifest).replace("manifest.json", "vectors.f32"))
    data = np.fromfile(vectors, dtype="<f4").reshape(-1, DIM)
    data[-3] = -data[-3]
    data.tofile(vectors)
    report = _check(db)
    assert report.only_cache, report.problems
    assert "vector cache" in report.problems[0]


def test_the_label_map_reads_alike_by_numpy_and_by_pickle(db: Path, tmp_path: Path) -> None:
    seg = _segment(db)
    labels, ids = chroma_format.label_table(seg) or (None, None)
    assert labels is not None and ids is not None
    data = (seg / "index_metadata.pickle").read_bytes()
    assert chroma_format._rust_label_table(data) is not None  # the numpy path read it
    want = chroma_format.label_map(seg)
    assert want is not None and len(want) == len(labels) == COUNT
    assert {int(k): v.decode() for k, v in zip(labels, ids, strict=True)} == want
    # A pickle written otherwise (Python's own, other protocols) is read by the pickle
    # module; a cut one by neither.
    other = tmp_path / "other"
    other.mkdir()
    for protocol in (2, 4):
        (other / "index_metadata.pickle").write_bytes(
            pickle.dumps({"label_to_id": dict(want)}, protocol=protocol)
        )
        assert (
            chroma_format._rust_label_table((other / "index_metadata.pickle").read_bytes()) is None
        )
        again = chroma_format.label_table(other)
        assert again is not None
        assert {int(k): v.decode() for k, v in zip(*again, strict=True)} == want
    for cut in (1, 2, 60, len(data) // 2):
        (other / "index_metadata.pickle").write_bytes(data[:-cut])
        assert chroma_format.label_table(other) is None


def test_the_full_self_search_reads_every_vector_a_chunk_at_a_time(db: Path) -> None:
    """What the child of `check --full` searches for: every stored vector, in chunks."""
    chunks = list(repair._stored_sample(str(db), 0))
    assert len(chunks) == -(-COUNT // repair.CHECK_CHUNK)
    ids = [i for _, _, chunk_ids, _ in chunks for i in chunk_ids]
    vectors = np.concatenate([v for *_, v in chunks])
    expected = unit_vectors(np.random.default_rng(4), COUNT)
    by_id = {path_id(record(i, expected[i]).path): expected[i] for i in range(COUNT)}
    assert sorted(ids) == sorted(by_id)
    assert np.allclose(vectors, np.stack([by_id[i] for i in ids]), atol=1e-6)
    assert {counts for _, counts, _, _ in chunks} == {(COUNT, COUNT)}
    sampled = [i for _, _, chunk_ids, _ in repair._stored_sample(str(db), 10) for i in chunk_ids]
    assert len(sampled) == 10 and set(sampled) <= set(by_id)


_KILLED_CHECK = r"""
import subprocess, sys
from clipseek.store import Store, repair

real = subprocess.Popen
# Stands in for the self-search child: reads what it is handed, then waits to be killed.
STAND_IN = "import sys, signal; sys.stdin.buffer.read(); signal.pause()"

def started(command, **kwargs):
    proc = real([sys.executable, "-c", STAND_IN], **kwargs)
    handed = command[-1] == "-" and kwargs.get("stdin") == subprocess.PIPE
    print("STARTED", proc.pid, handed, flush=True)
    return proc

repair.subprocess.Popen = started
repair.check(Store(sys.argv[1], create=False), sample=5)
"""


@pytest.mark.slow  # a child process
def test_a_killed_check_leaves_no_sample_behind(db: Path, tmp_path: Path) -> None:
    """The sample went to the child in a folder of the temporary directory, which a killed
    check left there (25 of them on the machine that found it); now it goes on stdin."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    env = {
        **os.environ,
        "TMPDIR": str(temp),
        "CLIPSEEK_SNAPSHOT_DIR": str(snapshots),
        "PYTHONPATH": str(Path(repair.__file__).resolve().parents[2]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_CHECK, str(db)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    child = None
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the self-search has started: the moment to kill
        assert line.split()[::2] == ["STARTED", "True"], line + (
            proc.stderr.read() if proc.stderr else ""
        )
        child = int(line.split()[1])
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
        if child is not None:
            os.kill(child, signal.SIGKILL)
    assert list(temp.iterdir()) == []


@pytest.mark.slow  # the self-search's child process
def test_the_self_search_started_early_gives_no_verdict_when_the_metadata_is_damaged(
    db: Path,
) -> None:
    """The self-search starts once the vector files check clean, beside the metadata
    check; damage found there ends it, and the report says only what a check that
    searched last would say."""
    healthy = repair.check(Store(db, create=False), sample=20)
    assert healthy.healthy and healthy.sampled and healthy.found_self == 20, healthy.problems
    _sql(
        db,
        "UPDATE embedding_metadata SET int_value = NULL, string_value = 'big' "
        "WHERE id = ? AND key = 'mtime_ns'",
        _last_rowid(db),
    )
    report = repair.check(Store(db, create=False), sample=20)
    assert len(report.problems) == 1 and "does not match their path" in report.problems[0]
    assert report.found_self == 0 and not report.inconclusive


def test_ids_are_joined_alike_when_their_hashes_collide(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records and vectors are joined on a hash of each id, every match compared byte for
    byte; ids whose hashes collide (here: all of them) are searched as strings."""
    ids = [path_id(record(i, np.zeros(DIM)).path) for i in range(COUNT)]
    table = repair._keys(ids)
    wanted = repair._keys([ids[7], "not an id", ids[0], ids[-1], ids[7] + "x"])
    expected = [7, -1, 0, COUNT - 1, -1]
    assert repair._lookup(table, wanted).tolist() == expected
    monkeypatch.setattr(repair, "_hash_keys", lambda keys: np.zeros(keys.size, dtype=np.uint64))
    assert repair._lookup(table, wanted).tolist() == expected
    assert _check(db).healthy
    rowid = _last_rowid(db)
    for table_name in ("embedding_metadata", "embedding_metadata_array", "embeddings"):
        _sql(db, f"DELETE FROM {table_name} WHERE id = ?", rowid)
    assert "1 stored vectors belong to no record." in _check(db).problems
