"""Checking an index without the model, and rebuilding its vector files from what it stored.

Where Chroma keeps what (``chroma.sqlite3`` and the hnswlib files) is described, and
read, in :mod:`clipseek.store.chroma_format`; repair reads them whatever chromadb's release
(it is there for when chromadb cannot be trusted with them) and checks its result with
chromadb.

``collection.get(include=["embeddings"])`` answers from the loaded vector files plus
the log, so it needs the files that may be damaged. Here both are read directly
(SQLite read-only, numpy over the files, a pickle reader that builds only plain
values), so a damaged graph, a garbled header or a crash inside Chroma does not stop
the vectors being recovered: the graph is rebuilt from them by a fresh Chroma index.
Nothing here imports chromadb or torch, except the self-search, which runs in a child
process so that a crash there is reported as damage instead of killing the caller.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipseek.errors import ClipseekError, DamagedIndexError, StoreError
from clipseek.store.aside import aside_folder, kept_sentence, prune_aside
from clipseek.store.chroma import Store
from clipseek.store.chroma_format import (
    DATABASE,
    NORM_TOLERANCE,
    SEGMENT_NAME,
    HnswHeader,
    applied_seq,
    collection_metadata,
    collections,
    connect_readonly,
    hnsw_chunks,
    hnsw_header,
    hnsw_vectors_at,
    ids_of,
    label_map,
    label_table,
    logged_vectors,
    not_unit,
    pending_writes,
    read_hnsw_rows,
    read_metadata,
    record_chunks,
    record_id_chunks,
    record_rowids,
    segments,
    stored_norms,
    unit_rows,
)
from clipseek.store.integrity import find_damage
from clipseek.store.keys import ancestors, meta_text, path_from_meta, path_id
from clipseek.store.lock import LOCK_NAMES, WriterLock
from clipseek.store.records import COLLECTION_PREFIX, FAILURES_PREFIX, Record
from clipseek.store.snapshot import remove_snapshot, take_snapshot

if TYPE_CHECKING:
    import numpy as np

    from clipseek.store.vector_cache import CacheComparison

#: Left in the database folder while an index run writes; found at the next run's start,
#: it says the last run was interrupted, and the index is checked before it is used.
RUN_MARKER = "clipseek-run.marker"
#: How many neighbours a self-search asks for: a copy of a file has the same vector,
#: so a record need not come first, only among its exact equals.
_SELF_K = 10
#: Neighbours asked for in a second look at the vectors the first search missed: a wider
#: search follows more of the graph, so what it finds was the first search's approximation.
_WIDE_K = 100


def tolerated_misses(searched: int) -> int:
    """How many of ``searched`` vectors the graph's search may miss on a healthy index.

    Chroma's HNSW search is approximate: on a sound graph of a million pictures about one
    sampled vector in a few thousand is not reached (docs/PERFORMANCE.md), while broken
    links lose many. Up to 0.2% is the graph's own approximation (none below 500 searches);
    more is damage."""
    return searched // 500


#: Vectors ``clipseek check`` searches for by default, chosen at random (``--full``: all).
#: If a share f of the vectors could not find themselves, a sample of m finds at least
#: one of them with probability 1 - (1 - f)^m: for m = 2,000, 99.3 % when f = 0.25 %
#: and 99.995 % when f = 0.5 %. Every other check covers every record.
CHECK_SAMPLE = 2000


# --------------------------------------------------------------------------- reading


@dataclass
class StoredCollection:
    """One Chroma collection as its files hold it."""

    name: str
    collection_id: str
    metadata: dict[str, Any]
    #: Record id → metadata, from the SQLite metadata segment.
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Record id → vector, from the vector files and the write log.
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    #: What could not be read of the vector files (None: all of it).
    vector_problem: str | None = None
    #: Stored vector norms (``length.bin``) that are not those of unit vectors.
    norm_problem: str | None = None
    #: Writes in Chroma's log its metadata has not applied yet (id → added, or deleted):
    #: in flight, not damage.
    pending: dict[str, bool] = field(default_factory=dict)

    @property
    def is_failures(self) -> bool:
        return self.name.startswith(FAILURES_PREFIX)

    @property
    def slug(self) -> str:
        prefix = FAILURES_PREFIX if self.is_failures else COLLECTION_PREFIX
        return self.name[len(prefix) :]


def read_stored(location: str | os.PathLike[str]) -> list[StoredCollection]:
    """Every clipseek collection with its records and vectors, read without Chroma.

    Raises :class:`DamagedIndexError` when the SQLite file itself cannot be read: then
    nothing can be recovered without the images.
    """
    folder = Path(location)
    path = folder / DATABASE
    if not path.is_file():
        return []
    try:
        con = connect_readonly(path)
    except sqlite3.Error as exc:
        raise DamagedIndexError(_unreadable(folder, exc)) from None
    try:
        return _read_collections(con, folder)
    except sqlite3.Error as exc:
        raise DamagedIndexError(_unreadable(folder, exc)) from None
    finally:
        con.close()


def _unreadable(folder: Path, exc: BaseException) -> str:
    return (
        f"The index at {folder} cannot be read ({exc}), so its stored vectors cannot be "
        "recovered. Rebuild it from your images with `clipseek index --rebuild FOLDER...`."
    )


def _read_collections(con: sqlite3.Connection, folder: Path) -> list[StoredCollection]:
    out = []
    for collection_id, name in collections(con, prefixes=[COLLECTION_PREFIX, FAILURES_PREFIX]):
        col = StoredCollection(name, collection_id, collection_metadata(con, collection_id))
        scopes = {scope: segment for scope, segment, _ in segments(con, collection_id)}
        rowids = _read_records(con, scopes.get("METADATA"), col)
        if scopes.get("METADATA") is not None:
            col.pending = pending_writes(con, collection_id, scopes["METADATA"])
        _read_vectors(con, folder, scopes.get("VECTOR"), rowids, col)
        out.append(col)
    return out


def _read_records(
    con: sqlite3.Connection, segment: str | None, col: StoredCollection
) -> dict[int, str]:
    """Fill ``col.records``; returns SQLite row id → record id."""
    if segment is None:
        return {}
    rowids = {rowid: record_id for record_id, rowid in record_rowids(con, segment).items()}
    for rowid, meta in read_metadata(con, segment).items():
        record_id = rowids.get(rowid)
        if record_id is not None:
            col.records[record_id] = meta
    for record_id in rowids.values():
        col.records.setdefault(record_id, {})
    return rowids


def _read_vectors(
    con: sqlite3.Connection,
    folder: Path,
    segment: str | None,
    rowids: dict[int, str],
    col: StoredCollection,
) -> None:
    """The persisted vectors (vector files), then the write log replayed over them in order."""
    if segment is not None and SEGMENT_NAME.match(segment) and (folder / segment).is_dir():
        try:
            vectors, col.norm_problem = _hnsw_vectors(folder / segment, rowids)
            col.vectors.update(vectors)
        except (OSError, ValueError, struct.error) as exc:
            col.vector_problem = f"{segment}: {exc}"
    for record_id, vector in logged_vectors(con, col.collection_id).items():
        if vector is None:
            col.vectors.pop(record_id, None)
        else:
            col.vectors[record_id] = vector


def _hnsw_vectors(seg: Path, rowids: dict[int, str]) -> tuple[dict[str, np.ndarray], str | None]:
    """Vectors in ``data_level0.bin``, by record id; deleted elements are left out.

    Labels map to ids through ``index_metadata.pickle``, or, when that is unreadable,
    through SQLite's row ids, which Chroma uses as labels.
    """
    import numpy as np

    rows = read_hnsw_rows(seg)
    count = rows.header.count
    if count == 0:
        return {}, None
    label_to_id = label_map(seg) or dict(rowids)
    vectors = rows.vectors
    out = {}
    for i in range(count):
        if rows.deleted[i]:
            continue
        record_id = label_to_id.get(int(rows.labels[i]))
        if record_id is not None:
            out[record_id] = vectors[i]
    # Chroma keeps each vector's norm there to give back what was stored; clipseek
    # stores unit vectors, so anything else is damage (a reused vector would carry it).
    norms = stored_norms(seg, count)
    if norms.size < count or not (np.abs(norms[~rows.deleted] - 1.0) < 1e-3).all():
        return out, "length.bin holds norms that are not those of the stored vectors"
    return out, None


# --------------------------------------------------------------------------- reading by columns

#: Records and vector-file rows ``check`` reads at a time: its memory holds a chunk of them
#: (and a few bytes a record in arrays), whatever the library's size.
CHECK_CHUNK = 50_000
#: Rows of ``data_level0.bin`` read at a time (about 38 MB at 512-d, 32 neighbours).
_FILE_ROWS = 16_384
#: The metadata ``check`` compares with each record's path.
_CHECKED_KEYS = ("path", "path_b64", "size", "mtime_ns", "dirs")


def _keys(ids: Iterable[str]) -> np.ndarray:
    """Record ids as numpy bytes (UTF-8), to be sorted and searched as arrays."""
    import numpy as np

    out = np.array([i.encode("utf-8", "surrogatepass") for i in ids], dtype=bytes)
    return out if out.size else np.zeros(0, dtype="S1")


def _lookup(table: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Where each of ``wanted`` is in a table of keys (the first, if twice), -1 if absent.

    Joined on a 64-bit hash of each key (numpy searches integers some twenty times faster
    than strings: 0.5 s, not 10 s, for a million of each), every match then compared
    byte for byte; keys whose hash is not the table's alone are searched as strings."""
    import numpy as np

    out = np.full(wanted.size, -1, dtype=np.int64)
    if not table.size or not wanted.size:
        return out
    width = -(-max(table.dtype.itemsize, wanted.dtype.itemsize) // 8) * 8
    table = table.astype(f"S{width}", copy=False)
    wanted = wanted.astype(f"S{width}", copy=False)
    hashes = _hash_keys(table)
    by_hash = np.argsort(hashes, kind="stable")
    ordered = hashes[by_hash]
    shared = np.zeros(ordered.size, dtype=bool)  # a hash two keys of the table share
    same = ordered[1:] == ordered[:-1]
    shared[1:] |= same
    shared[:-1] |= same
    probe = _hash_keys(wanted)
    at = np.minimum(np.searchsorted(ordered, probe), ordered.size - 1)
    found = (ordered[at] == probe) & ~shared[at]
    candidate = by_hash[at]
    found &= table[candidate] == wanted
    out[found] = candidate[found]
    # Shared hashes, and the (astronomically rare) key whose hash matches another's:
    # searched as strings.
    slow = np.flatnonzero(~found & (ordered[at] == probe))
    if slow.size:
        keys = np.argsort(table, kind="stable")
        sorted_keys = table[keys]
        pos = np.minimum(np.searchsorted(sorted_keys, wanted[slow]), sorted_keys.size - 1)
        hit = sorted_keys[pos] == wanted[slow]
        out[slow[hit]] = keys[pos[hit]]
    return out


def _hash_keys(keys: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each key (bytes of a width that is a multiple of 8)."""
    import numpy as np

    words = np.ascontiguousarray(keys).view("<u8").reshape(keys.size, -1)
    out = np.zeros(keys.size, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in range(words.shape[1]):
            out ^= words[:, column]
            out *= np.uint64(0x9E3779B97F4A7C15)
            out ^= out >> np.uint64(29)
    return out


@dataclass
class ColumnarCollection:
    """One collection as ``check`` reads it: a few bytes a record in numpy arrays (its row
    id, its id, where its vector is), never a Python object per record. What
    :class:`StoredCollection` holds per record, it holds as arrays; its ``info`` carries
    the rest (``records`` and ``vectors`` stay empty)."""

    info: StoredCollection
    #: The metadata segment (None: the collection has none).
    segment: str | None = None
    #: Row ids, ascending, and each record's id (UTF-8 bytes) in that order.
    rowids: np.ndarray | None = None
    keys: np.ndarray | None = None
    #: Record index → its vector's element in ``data_level0.bin`` (-1: none there).
    element: np.ndarray | None = None
    #: Record index → its vector from the write log, which replaces the vector files'.
    logged: dict[int, np.ndarray] = field(default_factory=dict)
    #: Record index → its vector is not a finite unit vector of the collection's size.
    bad: np.ndarray | None = None
    #: Stored vectors that belong to no record.
    extra: int = 0
    folder: Path | None = None
    head: HnswHeader | None = None
    #: The vector cache compared with the vectors as they are read (None: not asked for).
    cache: CacheComparison | None = None

    @property
    def count(self) -> int:
        return 0 if self.rowids is None else int(self.rowids.size)

    def has_vector(self) -> np.ndarray:
        import numpy as np

        assert self.element is not None
        has = self.element >= 0
        if self.logged:
            has[np.fromiter(self.logged, dtype=np.int64, count=len(self.logged))] = True
        return has

    def index_of(self, ids: Iterable[str]) -> np.ndarray:

        assert self.keys is not None
        return _lookup(self.keys, _keys(ids))

    def vectors_at(self, index: np.ndarray) -> np.ndarray | None:
        """The vectors of the records at ``index`` (record indexes), None when one has none
        or they are not all of one size."""
        import numpy as np

        assert self.element is not None
        index = np.asarray(index, dtype=np.int64)
        element = self.element[index]
        from_log = np.zeros(index.size, dtype=bool)
        if self.logged:
            from_log = np.isin(index, np.fromiter(self.logged, dtype=np.int64))
        if ((element < 0) & ~from_log).any():
            return None
        shapes = {self.logged[int(i)].shape for i in index[from_log].tolist()}
        if (~from_log).any():
            assert self.folder is not None and self.head is not None
            shapes.add((self.head.dim,))
        if len(shapes) > 1:
            return None
        dim = shapes.pop()[0] if shapes else self.head.dim if self.head is not None else 0
        out = np.empty((index.size, dim), dtype=np.float32)
        files = np.flatnonzero(~from_log)
        if files.size:
            assert self.folder is not None and self.head is not None
            out[files] = hnsw_vectors_at(self.folder, self.head, element[files])
        for j in np.flatnonzero(from_log).tolist():
            out[j] = self.logged[int(index[j])]
        return out

    def vectors_of(self, rowids: np.ndarray) -> np.ndarray | None:
        """:meth:`vectors_at` by row id (None also when one is not a record's)."""
        import numpy as np

        assert self.rowids is not None
        if not self.rowids.size:
            return None
        at = np.minimum(np.searchsorted(self.rowids, rowids), self.rowids.size - 1)
        if bool((self.rowids[at] != rowids).any()):
            return None
        return self.vectors_at(at)

    def record_counts(self) -> tuple[int, int]:
        """The records listed, and as many once Chroma applies the writes still in its
        log (a writer's work in flight, not damage: see :class:`StoredCollection`)."""
        pending = self.info.pending
        if not pending:
            return self.count, self.count
        ids = list(pending)
        listed = [at >= 0 for at in self.index_of(ids).tolist()]
        gone = sum(1 for i, there in zip(ids, listed, strict=True) if there and not pending[i])
        added = sum(1 for i, there in zip(ids, listed, strict=True) if not there and pending[i])
        return self.count, self.count - gone + added


def read_columns(
    con: sqlite3.Connection, folder: Path, *, caches: bool = False
) -> list[ColumnarCollection]:
    """Every clipseek collection as :class:`ColumnarCollection`, its vector files read a
    chunk at a time; with ``caches``, each vector cache compared with the vectors on the
    way (one pass over the vector files for both)."""
    from clipseek.store.vector_cache import CacheComparison

    out = []
    for collection_id, name in collections(con, prefixes=[COLLECTION_PREFIX, FAILURES_PREFIX]):
        info = StoredCollection(name, collection_id, collection_metadata(con, collection_id))
        scopes = {scope: segment for scope, segment, _ in segments(con, collection_id)}
        col = ColumnarCollection(info, scopes.get("METADATA"))
        _read_keys(con, col)
        if col.segment is not None:
            info.pending = pending_writes(con, collection_id, col.segment)
            if caches and not info.is_failures:
                dim = int(info.metadata.get("dim", 0) or 0)
                col.cache = CacheComparison(
                    folder, collection_id, col.segment, dim, con, col.rowids
                )
        _scan_vectors(con, folder, scopes.get("VECTOR"), col)
        out.append(col)
    return out


def _read_keys(con: sqlite3.Connection, col: ColumnarCollection) -> None:
    import numpy as np

    rowids, keys = [], []
    if col.segment is not None:
        for chunk_rowids, ids in record_id_chunks(con, col.segment, CHECK_CHUNK):
            rowids.append(chunk_rowids)
            keys.append(_keys(ids))
    col.rowids = np.concatenate(rowids) if rowids else np.zeros(0, dtype=np.int64)
    col.keys = np.concatenate(keys) if keys else np.zeros(0, dtype="S1")
    col.element = np.full(col.count, -1, dtype=np.int64)
    col.bad = np.zeros(col.count, dtype=bool)


def _scan_vectors(
    con: sqlite3.Connection, folder: Path, segment: str | None, col: ColumnarCollection
) -> None:
    """The vector files a chunk at a time, then the write log over them (as
    :func:`_read_vectors`): where each record's vector is, which are not finite unit
    vectors, and how many belong to no record."""
    import numpy as np

    assert col.keys is not None and col.element is not None and col.bad is not None
    info = col.info
    dim = int(info.metadata.get("dim", 0) or 0)
    # Only the writes the vector files have not applied: Chroma replays those over the
    # files; an applied write still in the log does not mend a damaged file (as long as
    # Chroma's log, not the library).
    applied = applied_seq(con, segment) if segment is not None else None
    logged = logged_vectors(con, info.collection_id, after=applied)
    logged_keys = _keys(logged)
    added = _keys(i for i, adding in info.pending.items() if adding)
    extra_keys: list[np.ndarray] = []
    if segment is not None and SEGMENT_NAME.match(segment) and (folder / segment).is_dir():
        seg = folder / segment
        try:
            extra_keys = _scan_files(seg, col, logged_keys, dim)
        except (OSError, ValueError, struct.error) as exc:
            info.vector_problem = f"{segment}: {exc}"
            info.norm_problem = None
            col.element[:] = -1
            col.bad[:] = False
            extra_keys = []
    logged_index = _lookup(col.keys, logged_keys)
    extra_logged = []
    for (record_id, vector), at in zip(logged.items(), logged_index.tolist(), strict=True):
        if vector is None:
            continue  # deleted: its vector in the files was passed over
        if at < 0:
            extra_logged.append(record_id)
            continue
        col.logged[at] = vector
        col.bad[at] = (bool(dim) and vector.shape != (dim,)) or not bool(
            unit_rows(np, vector.reshape(1, -1))[0]
        )
    if col.cache is not None and col.logged:
        at = np.fromiter(col.logged, dtype=np.int64, count=len(col.logged))
        shapes = {v.shape for v in col.logged.values()}
        if len(shapes) == 1:
            assert col.rowids is not None
            col.cache.compare(col.rowids[at], np.stack(list(col.logged.values())))
        else:
            col.cache.undecided = True
    extra = np.unique(np.concatenate(extra_keys)) if extra_keys else np.zeros(0, "S1")
    if added.size and extra.size:
        extra = extra[~np.isin(extra, added)]
    col.extra = int(extra.size) + sum(1 for i in extra_logged if not info.pending.get(i))


def _scan_files(
    seg: Path, col: ColumnarCollection, logged_keys: np.ndarray, dim: int
) -> list[np.ndarray]:
    """:func:`_scan_vectors` for the vector files; returns the ids (keys) of live vectors
    that belong to no record. Raises what reading them raises."""
    import numpy as np

    assert col.keys is not None and col.element is not None and col.bad is not None
    head = hnsw_header(seg)
    col.folder, col.head = seg, head
    count = head.count
    if count == 0:
        return []
    table = label_table(seg)
    if table is None or not table[0].size:
        # Chroma labels its vectors with SQLite's row ids when the map is lost.
        assert col.rowids is not None
        labels, label_ids = col.rowids, col.keys
    else:
        labels, label_ids = table
    by_label = np.argsort(labels, kind="stable")
    labels, label_ids = labels[by_label], label_ids[by_label]
    label_record = _lookup(col.keys, label_ids)
    label_logged = np.isin(label_ids, logged_keys) if logged_keys.size else None
    deleted = np.empty(count, dtype=bool)
    extra: list[np.ndarray] = []
    checks = not col.info.is_failures  # failure records hold a zero placeholder
    for start, chunk_labels, chunk_deleted, vectors in hnsw_chunks(seg, head, _FILE_ROWS):
        n = len(chunk_labels)
        deleted[start : start + n] = chunk_deleted
        wanted = chunk_labels.astype(np.int64)
        at = np.minimum(np.searchsorted(labels, wanted), labels.size - 1)
        use = ~chunk_deleted & (labels[at] == wanted)
        if label_logged is not None:
            use &= ~label_logged[at]  # the log's word on these replaces the files'
        rows = np.flatnonzero(use)
        record = label_record[at[rows]]
        known = record >= 0
        col.element[record[known]] = start + rows[known]
        if col.cache is not None:
            assert col.rowids is not None
            col.cache.compare(col.rowids[record[known]], vectors[rows[known]])
        if (~known).any():
            extra.append(label_ids[at[rows[~known]]])
        if checks:
            if dim and head.dim != dim:
                col.bad[record[known]] = True
            else:
                col.bad[record[known]] = ~unit_rows(np, vectors[rows[known]])
        del vectors
    # Chroma keeps each vector's norm there to give back what was stored; clipseek
    # stores unit vectors, so anything else is damage (a reused vector would carry it).
    norms = stored_norms(seg, count)
    if norms.size < count or not (np.abs(norms[~deleted] - 1.0) < NORM_TOLERANCE).all():
        col.info.norm_problem = "length.bin holds norms that are not those of the stored vectors"
    return extra


# --------------------------------------------------------------------------- check


@dataclass
class CheckReport:
    location: str
    #: Records (images) in the main collections.
    records: int = 0
    #: Of those, records whose vector a search by that vector returns.
    found_self: int = 0
    #: Vectors the graph's approximate search did not reach, within :func:`tolerated_misses`.
    missed_self: int = 0
    #: One sentence each; empty when the index is healthy.
    problems: list[str] = field(default_factory=list)
    #: Whether :func:`repair` can fix the problems from the stored vectors.
    repairable: bool = True
    #: The self-search looked for a random sample of the vectors, not every one.
    sampled: bool = False
    #: The self-search could not run at all (no verdict on the vector files).
    inconclusive: bool = False
    #: Of ``problems``, those of the vector cache beside the index (a rebuild of the
    #: cache fixes them; searches meanwhile read Chroma's files, never the cache).
    cache_problems: list[str] = field(default_factory=list)

    @property
    def only_cache(self) -> bool:
        return bool(self.problems) and self.problems == self.cache_problems

    @property
    def healthy(self) -> bool:
        return not self.problems

    def sentence(self) -> str:
        if self.healthy:
            if self.missed_self:
                searched = self.found_self + self.missed_self
                return (
                    f"The index at {self.location} is healthy: {self.records} images, every "
                    f"record has its vector, and {self.found_self} of {searched} vectors "
                    f"searched for find themselves ({self.missed_self} missed by the graph's "
                    "approximate search: within what a sound graph of this size misses)."
                )
            if self.sampled:
                return (
                    f"The index at {self.location} is healthy: {self.records} images, every "
                    f"record has its vector, and {self.found_self} vectors chosen at random "
                    "each find themselves (`--full` searches for every one)."
                )
            return (
                f"The index at {self.location} is healthy: {self.records} images, every "
                "record has its vector and every vector finds itself."
            )
        fix = (
            "Run `clipseek repair` to rebuild it from the index (no model needed)."
            if self.only_cache
            else "Run `clipseek repair` to rebuild the vector files from the stored vectors "
            "(no model needed)."
            if self.repairable
            else "Rebuild it from your images with `clipseek index --rebuild FOLDER...`."
        )
        return f"The index at {self.location} is damaged: {self.problems[0]} {fix}"


def check(store: Store, *, self_search: bool = True, sample: int | None = None) -> CheckReport:
    """Whether records, vector files and metadata agree, and every vector finds itself.

    A reader: it never writes the index (Chroma writes whatever folder it opens, so the
    self-search opens a private snapshot), and it sees only committed states (the shared
    data lock is held from the structural check to the end of the self-search, so a
    writer's work in flight is never taken for damage; a writer waits meanwhile). The
    structural check reads the files in place, a chunk of records at a time
    (:class:`ColumnarCollection`), so its memory does not grow with the library. The
    self-search loads Chroma in a child process, so that a crash there (a garbled file the
    structural check missed) is reported as damage and not as the death of this process.
    ``sample`` limits the self-search to that many vectors per collection, chosen at
    random (the automatic check after an interrupted run); every other check always
    covers every record.
    """
    report = CheckReport(store.location)
    if store.is_remote:
        report.problems.append("a Chroma server cannot be checked from here.")
        report.repairable = False
        return report
    folder = Path(store.location)
    with store.reading():
        # Asked for: every link is read, notes or not.
        damage = find_damage(folder, notes="ignore")
        if damage:
            report.problems.append(f"{damage}.")
        if not (folder / DATABASE).is_file():
            return report
        search = _SelfSearch(folder, sample) if self_search else None
        try:
            _check_structure(store, report, search)
        except sqlite3.Error as exc:
            report.problems.append(_unreadable(folder, exc).split(" (", 1)[0] + ".")
            report.repairable = False
        except BaseException:
            if search is not None:
                search.stop()
            raise
        if search is not None:
            search.finish(report)
    return report


def _check_structure(store: Store, report: CheckReport, search: _SelfSearch | None) -> None:
    """Every record against the vector files, its metadata and the vector cache. The
    self-search starts as soon as the vector files check clean, and runs in its child
    while this process checks the metadata and the cache: two cores, each busy. Raises
    sqlite3.Error when the database cannot be read."""
    folder = Path(store.location)
    con = connect_readonly(folder / DATABASE)
    try:
        cols = read_columns(con, folder, caches=True)
        for col in cols:
            _check_vectors(con, col, report)
        if search is not None and not report.problems:
            search.start(con, cols)
        # A failures collection follows the key schema of its main collection.
        schemas = {c.info.slug: _schema(c.info) for c in cols if not c.info.is_failures}
        for col in cols:
            schema = schemas.get(col.info.slug, _schema(col.info))
            wrong = _wrong_metadata(con, col, schema)
            if wrong:
                report.problems.append(
                    f"{wrong} records of {col.info.name} have metadata that does not match "
                    "their path."
                )
        if not report.problems:
            _check_caches(cols, report)
    finally:
        con.close()


class _SelfSearch:
    """The self-search in its child process, on a snapshot taken under the caller's
    shared lock: started early, its verdict taken only when everything else is clean (so
    the findings are those of a check that searched last)."""

    def __init__(self, folder: Path, sample: int | None) -> None:
        self.folder = folder
        self.sample = sample
        self.snapshot: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.thread: threading.Thread | None = None
        self.answer: dict[str, Any] = {}
        self.failed: str | None = None

    def start(self, con: sqlite3.Connection, cols: list[ColumnarCollection]) -> None:
        payload = None
        if self.sample:
            self.answer["sampled"] = False
            payload = _sample_payload(con, cols, self.sample, self.answer)
        try:
            self.snapshot = take_snapshot(self.folder)
            env = dict(os.environ)
            root = str(Path(__file__).resolve().parents[2])
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")]))
            env.setdefault("ANONYMIZED_TELEMETRY", "False")
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "clipseek.store.repair",
                    "self-search",
                    str(self.snapshot),
                    str(self.sample or 0),
                    *(["-"] if payload is not None else []),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
        except OSError as exc:
            self.failed = f"the self-search could not run ({exc})."
            return
        # The sample goes through the child's stdin, not a file, so a killed check leaves
        # nothing behind; a thread feeds it and reads the answer while this one checks on.
        self.thread = threading.Thread(target=self._talk, args=(payload or b"",), daemon=True)
        self.thread.start()

    def _talk(self, payload: bytes) -> None:
        assert self.proc is not None
        try:
            self.answer["io"] = self.proc.communicate(payload, timeout=3600)
        except subprocess.TimeoutExpired as exc:
            self.proc.kill()
            self.proc.communicate()
            self.answer["error"] = exc
        except (OSError, ValueError) as exc:
            self.answer["error"] = exc

    def finish(self, report: CheckReport) -> None:
        """Take the verdict into ``report`` if nothing else was found; stop the child
        otherwise. Removes the snapshot."""
        try:
            if report.problems or (self.thread is None and self.failed is None):
                return  # found otherwise, or nothing to search
            if self.failed is not None:
                report.problems.append(self.failed)
                report.inconclusive = True
                report.repairable = False
                return
            assert self.thread is not None
            self.thread.join()
            report.sampled = bool(self.answer.get("sampled", False))
            _take_verdict(report, self.proc, self.answer)
        finally:
            self.stop()

    def stop(self) -> None:
        """End the child if it still runs (its verdict is not wanted) and remove the
        snapshot."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.thread is not None:
            self.thread.join()
        if self.snapshot is not None:
            remove_snapshot(self.snapshot)
            self.snapshot = None


def _take_verdict(
    report: CheckReport, proc: subprocess.Popen[bytes] | None, answer: dict[str, Any]
) -> None:
    """The self-search child's answer, in ``report``."""
    error = answer.get("error")
    if proc is None or error is not None or "io" not in answer:
        report.problems.append(f"the self-search could not run ({error}).")
        report.inconclusive = True
        report.repairable = False
        return
    out, err = answer["io"]
    if proc.returncode < 0:
        report.problems.append(
            f"Chroma crashed while searching the vector files (signal {-proc.returncode})."
        )
        return
    try:
        verdict = json.loads(out.decode("utf-8", "replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = " ".join(err.decode("utf-8", "replace").split())[-200:]
        report.problems.append(f"a search of the vector files failed ({tail or 'no answer'}).")
        return
    report.found_self = int(verdict.get("found", 0))
    report.missed_self = int(verdict.get("missed", 0))
    problem = verdict.get("problem")
    if problem:
        report.problems.append(str(problem))


def _check_caches(cols: list[ColumnarCollection], report: CheckReport) -> None:
    """The vector cache of each index against what the index holds (vector_cache.py),
    compared while the vector files were read."""
    for col in cols:
        problem = col.cache.verdict() if col.cache is not None else None
        if problem:
            report.problems.append(f"{problem}.")
            report.cache_problems.append(f"{problem}.")


def _schema(col: StoredCollection) -> int:
    return int(col.metadata.get("clipseek_schema", 1) or 1)


def _check_vectors(con: sqlite3.Connection, col: ColumnarCollection, report: CheckReport) -> None:
    """Records against the vector files: each has one, and it is a finite unit vector."""
    import numpy as np

    info = col.info
    if info.norm_problem and not info.is_failures:  # failure records hold a zero vector
        report.problems.append(f"{info.norm_problem}.")
    if info.vector_problem:
        report.problems.append(
            f"the vector files of {info.name} cannot be read ({info.vector_problem})."
        )
    if not info.is_failures:
        assert col.keys is not None and col.bad is not None
        report.records += col.count
        # A record whose delete, or a vector whose record, is still only in Chroma's
        # write log is a writer's work in flight, which Chroma completes: not damage.
        missing = np.flatnonzero(~col.has_vector())
        if missing.size and info.pending:
            missing = missing[~np.isin(col.keys[missing], _keys(info.pending))]
        if missing.size:
            report.problems.append(f"{missing.size} of {col.count} records have no stored vector.")
        if col.extra:
            report.problems.append(f"{col.extra} stored vectors belong to no record.")
        bad = np.flatnonzero(col.bad)
        if bad.size:
            names = ", ".join(_paths_of(con, col, bad[:3])) + (", ..." if bad.size > 3 else "")
            report.problems.append(f"{not_unit(int(bad.size))} ({names}).")


def _paths_of(con: sqlite3.Connection, col: ColumnarCollection, index: np.ndarray) -> list[str]:
    """The paths of a few records (by record index), for a message."""
    assert col.rowids is not None and col.segment is not None
    rowids = [int(r) for r in col.rowids[index].tolist()]
    metas = read_metadata(con, col.segment, rowids)
    return [path_from_meta(metas.get(r, {})) for r in rowids]


def _wrong_metadata(con: sqlite3.Connection, col: ColumnarCollection, schema: int) -> int:
    """Records whose id, path text, size, mtime or folders do not match their path (as
    :func:`~clipseek.store.keys.path_from_meta` reads it), a chunk at a time."""
    if col.segment is None:
        return 0
    wrong = 0
    for chunk in record_chunks(con, col.segment, _CHECKED_KEYS, ("dirs",), CHECK_CHUNK):
        values = chunk.values
        # Every picture of a folder has the same folders above it: computed once a folder.
        folders: dict[str, list[str]] = {}
        for id_, text, raw, size, mtime, dirs, listed in zip(
            chunk.ids,
            values["path"],
            values["path_b64"],
            values["size"],
            values["mtime_ns"],
            values["dirs"],
            chunk.arrays["dirs"],
            strict=True,
        ):
            if raw:
                try:
                    path = os.fsdecode(base64.b64decode(raw))
                except (binascii.Error, TypeError, ValueError):
                    wrong += 1
                    continue
            else:
                path = "" if text is None else str(text)
            if (
                not path
                or path_id(path) != id_
                or not isinstance(size, int)
                or not isinstance(mtime, int)
                or text != meta_text(path, schema)
            ):
                wrong += 1
                continue
            stored = dirs if dirs is not None else listed
            if stored is not None:
                # The folders above a path depend only on its folder: the text up to its
                # last slash names it.
                folder = path[: path.rfind("/") + 1]
                want = folders.get(folder)
                if want is None:
                    want = folders[folder] = ancestors(path, schema)
                if stored != want:
                    wrong += 1
    return wrong


def _sample_payload(
    con: sqlite3.Connection, cols: list[ColumnarCollection], sample: int, answer: dict[str, Any]
) -> bytes | None:
    """The vectors the child searches for (a random ``sample`` of each collection's), with
    each collection's record counts, as the bytes of an ``.npz`` for the child's stdin: no
    file to leave behind if either process is killed. None when the sample is too large to
    hand over (the child then reads it itself, a chunk at a time)."""
    import numpy as np

    arrays: dict[str, Any] = {}
    for n, col in enumerate(c for c in cols if not c.info.is_failures):
        chosen = _sample_of(col, sample)
        if chosen.size < int(col.has_vector().sum()):
            answer["sampled"] = True
        if chosen.size > CHECK_CHUNK:
            return None
        assert col.rowids is not None and col.segment is not None
        rowids = col.rowids[chosen]
        id_of = ids_of(con, col.segment, rowids.tolist())
        dim = int(col.info.metadata.get("dim", 0) or 0) or 1
        vectors = col.vectors_at(chosen) if chosen.size else None
        arrays[f"name{n}"] = np.array(col.info.name)
        arrays[f"records{n}"] = np.array(col.record_counts())
        arrays[f"ids{n}"] = np.array([id_of[int(r)] for r in rowids.tolist()], dtype=str)
        arrays[f"vectors{n}"] = vectors if vectors is not None else np.zeros((0, dim), np.float32)
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def _sample_of(col: ColumnarCollection, sample: int) -> np.ndarray:
    """Record indexes of the vectors to search for: every one, or ``sample`` of them
    chosen at random (the same ones on every call)."""
    import numpy as np

    candidates = np.flatnonzero(col.has_vector())
    if 0 < sample < candidates.size:
        pick = np.random.default_rng(0).choice(candidates.size, sample, replace=False)
        candidates = candidates[np.sort(pick)]
    return candidates


def _sample_from(payload: bytes) -> dict[str, tuple[tuple[int, ...], list[str], Any]]:
    """Collection name -> (record counts, ids, vectors) from :func:`_sample_payload`'s bytes."""
    import numpy as np

    out = {}
    with np.load(io.BytesIO(payload)) as data:
        n = 0
        while f"name{n}" in data:
            ids = [str(i) for i in data[f"ids{n}"].tolist()]
            counts = tuple(int(c) for c in data[f"records{n}"].tolist())
            out[str(data[f"name{n}"])] = (counts, ids, data[f"vectors{n}"])
            n += 1
    return out


def _usable(vec: np.ndarray, dim: int) -> bool:
    """A stored vector of the collection's size, finite and of unit length."""
    import numpy as np

    return (not dim or vec.shape[0] == dim) and bool(unit_rows(np, vec.reshape(1, -1))[0])


def _stored_sample(
    location: str, sample: int
) -> Iterator[tuple[str, tuple[int, int], list[str], np.ndarray]]:
    """(collection name, record counts, ids, vectors) of every stored vector, or of
    ``sample`` per collection chosen as :func:`_sample_payload` chooses them, a chunk at a
    time (the child's ``--full``: its memory does not grow with the library)."""
    folder = Path(location)
    con = connect_readonly(folder / DATABASE)
    try:
        for col in read_columns(con, folder):
            if col.info.is_failures or col.segment is None:
                continue
            assert col.rowids is not None
            chosen = _sample_of(col, sample)
            counts = col.record_counts()
            for start in range(0, max(chosen.size, 1), CHECK_CHUNK):
                index = chosen[start : start + CHECK_CHUNK]
                id_of = ids_of(con, col.segment, col.rowids[index].tolist())
                ids = [id_of[int(r)] for r in col.rowids[index].tolist()]
                vectors = col.vectors_at(index)
                if vectors is None:
                    raise ValueError("the stored vectors are not all of one size")
                yield col.info.name, counts, ids, vectors
    finally:
        con.close()


def _self_misses(col: Any, ids: list[str], vectors: Any, k: int) -> list[int]:
    """Positions in ``ids`` whose vector a search for ``k`` neighbours does not return."""
    res = col.query(query_embeddings=vectors, n_results=k, include=["distances"])
    missed = []
    for at, (own, hits, dists) in enumerate(zip(ids, res["ids"], res["distances"], strict=True)):
        if own in hits:
            continue
        if len(hits) == k and dists and max(dists) < 1e-6:
            continue  # more exact copies than k: it cannot be told apart
        missed.append(at)
    return missed


def _self_search_child(
    location: str, sample: int = 0, payload: bytes | None = None
) -> dict[str, Any]:
    """In the child: search every stored vector (or ``payload``'s sample) through Chroma;
    count those that find themselves among their exact equals."""
    import numpy as np

    store = Store(location, create=False)
    found = 0
    lost = 0
    try:
        if payload is not None:
            wanted: Iterable[tuple[str, tuple[int, ...], list[str], Any]] = [
                (name, counts, ids, vectors)
                for name, (counts, ids, vectors) in _sample_from(payload).items()
            ]
        else:
            wanted = _stored_sample(location, sample)
        by_name = {col.name: col for col in store._collections()}
        counted: set[str] = set()
        for name, counts, ids, vectors in wanted:
            col = by_name.get(name)
            if col is None:
                continue
            total = int(col.count()) if name not in counted else counts[0]
            if name not in counted and total not in counts:
                return {
                    "found": found,
                    "problem": f"Chroma counts {total} records in {name}, "
                    f"the database lists {counts[0]}.",
                }
            counted.add(name)
            for start in range(0, len(ids), 256):
                chunk = ids[start : start + 256]
                queries = np.asarray(vectors[start : start + 256], dtype=np.float32)
                missed = _self_misses(col, chunk, queries, min(_SELF_K, total))
                if missed:  # a second, wider look: what it finds was approximation, not damage
                    again = _self_misses(
                        col, [chunk[i] for i in missed], queries[missed], min(_WIDE_K, total)
                    )
                    missed = [missed[i] for i in again]
                found += len(chunk) - len(missed)
                lost += len(missed)
    except (ClipseekError, Exception) as exc:
        return {"found": found, "problem": f"a search of the vector files failed ({exc})."}
    if lost > tolerated_misses(found + lost):
        return {
            "found": found,
            "problem": f"{lost} of {found + lost} vectors cannot be found by searching for "
            "themselves.",
        }
    return {"found": found, "missed": lost, "problem": None}


# --------------------------------------------------------------------------- repair


@dataclass
class RepairReport:
    location: str
    moved_to: str | None
    restored: int = 0
    #: Records without a usable vector: the next ``clipseek index`` embeds them again.
    dropped: int = 0
    after: CheckReport | None = None
    #: Only the vector cache beside the index was rebuilt.
    cache_only: bool = False

    def sentence(self) -> str:
        if self.cache_only:
            return (
                f"Rebuilt the vector cache of the index at {self.location} from the index; "
                "the index itself needed no repair."
            )
        text = (
            f"Repaired the index at {self.location}: {self.restored} images restored from "
            "their stored vectors without the model"
        )
        if self.dropped:
            text += (
                f"; {self.dropped} had no usable vector and are embedded again by the next "
                "`clipseek index` run"
            )
        if self.moved_to:
            moved = Path(self.moved_to)
            text += (
                f". The old files were moved to {moved} "
                f"({kept_sentence(moved.parent / Path(self.location).name)})"
            )
        return text + "."


def repair(
    store: Store,
    *,
    force: bool = False,
    on_progress: Callable[[str], None] | None = None,
    locked: bool = False,
    before: CheckReport | None = None,
) -> RepairReport | None:
    """Rebuild every collection from the stored vectors and metadata; None when healthy.

    The old files move to a sibling folder first (nothing is deleted), then a fresh
    Chroma index is written from the vectors read by :func:`read_stored`. Records
    whose vector is missing or garbled are left out, so the next index run sees them
    as new files and embeds them. Holds the writer lock unless ``locked`` says the
    caller holds it.
    """
    say = on_progress or (lambda _text: None)
    if store.reader:  # a repair writes: it opens the folder itself, never a reader's snapshot
        store = store.writer()
    lock = None if locked or store.is_remote else WriterLock(store.location)
    if store.is_remote:
        raise StoreError("`clipseek repair` works on a local index folder, not a Chroma server.")
    if lock is not None:
        lock.acquire(wait=False)
    try:
        if before is None:
            say("Checking the index")
            before = check(store)
        if before.healthy and not force:
            return None
        if not before.repairable:
            raise DamagedIndexError(before.sentence())
        if before.only_cache and not force:
            _rebuild_caches(store)
            report = RepairReport(store.location, None, cache_only=True)
            report.after = check(store)
            return report
        with store.reading():
            collections = read_stored(store.location)
        # The repaired index is written beside the old one and swapped in only when complete:
        # readers keep answering from the old files meanwhile, and a repair that is killed
        # (Ctrl-C, SIGKILL) leaves the index as it found it, not half rebuilt.
        staging = _fresh_staging(store)
        fresh = Store(str(staging))
        restored_total = dropped_total = 0
        for col in (c for c in collections if not c.is_failures):
            restored, dropped = _restore(fresh, col, collections)
            restored_total += restored
            dropped_total += dropped
            say(f"Restored {restored} images")
        fresh._forget_client()  # stop this process's Chroma there so everything is on disk
        say("Moving the old files aside")
        moved = move_aside(store, replacement=staging)
        store._committed()  # readers take the repaired index
        _rebuild_caches(store)
        report = RepairReport(store.location, moved)
        report.restored, report.dropped = restored_total, dropped_total
        report.after = check(store)
        return report
    finally:
        if lock is not None:
            lock.release()


def _rebuild_caches(store: Store) -> None:
    """Write every index's vector cache anew from the index (the caller holds the
    writer lock)."""
    from clipseek.store.cache_build import refresh_caches
    from clipseek.store.vector_cache import drop_all_caches

    drop_all_caches(store.location)
    refresh_caches(store.location, store._lock)


STAGING_SUFFIX = ".repairing"


def _fresh_staging(store: Store) -> Path:
    """An empty sibling folder for the repaired index (a killed repair's leftover, which
    nothing else uses while the writer lock is held, is removed first)."""
    folder = Path(store.location)
    staging = folder.with_name(f"{folder.name}{STAGING_SUFFIX}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def move_aside(store: Store, replacement: Path | None = None) -> str:
    """Move everything but the lock files to ``<db>.damaged-<time>``; returns where.
    With ``replacement``, that folder's files then take their place (a few renames).
    Only the newest few such copies are kept (:mod:`clipseek.store.aside`)."""
    folder = Path(store.location)
    store._forget_client()
    target = aside_folder(folder)
    with store.writing():
        try:
            target.mkdir(parents=True)
            for item in folder.iterdir():
                if item.name not in LOCK_NAMES and item.name != RUN_MARKER:
                    shutil.move(str(item), str(target / item.name))
            if replacement is not None:
                for item in replacement.iterdir():
                    if item.name not in LOCK_NAMES:
                        shutil.move(str(item), str(folder / item.name))
                shutil.rmtree(replacement, ignore_errors=True)
        except OSError as exc:
            raise StoreError(
                f"The index at {folder} could not be moved aside to {target} "
                f"({exc.strerror or exc}); move it by hand, then run `clipseek repair` on "
                "the moved copy with --db."
            ) from None
    store._health_checked = store._structure_checked = False
    prune_aside(folder)
    return str(target)


def _restore(
    store: Store, col: StoredCollection, everything: Iterable[StoredCollection]
) -> tuple[int, int]:

    dim = int(col.metadata.get("dim", 0) or 0)
    model_key = str(col.metadata.get("model_key", ""))
    index = store.create_index(
        model_key, str(col.metadata.get("model_name", model_key)), col.slug, dim
    )
    created = col.metadata.get("created")
    if created:
        with suppress(Exception):
            meta = {k: v for k, v in index._meta.items() if not k.startswith("hnsw:")}
            meta["created"] = created
            index._col.modify(metadata=meta)
            index._meta = meta
    try:
        roots = [str(r) for r in json.loads(str(col.metadata.get("roots", "[]")))]
    except ValueError:
        roots = []
    records = []
    dropped = 0
    for id_, meta in col.records.items():
        vec = col.vectors.get(id_)
        path = path_from_meta(meta)
        if vec is None or not path or path_id(path) != id_ or not _usable(vec, dim):
            dropped += 1
            continue
        extra = {
            k: v
            for k, v in meta.items()
            if k not in ("path", "path_b64", "dirs", "size", "mtime_ns", "width", "height")
            and isinstance(v, str | int | float | bool)
        }
        records.append(
            Record(
                path,
                vec,
                int(meta.get("size", -1)),
                int(meta.get("mtime_ns", -1)),
                int(meta.get("width", 0) or 0),
                int(meta.get("height", 0) or 0),
                extra=extra,
            )
        )
    for start in range(0, len(records), 1000):
        index.upsert(records[start : start + 1000])
    if roots:
        _set_roots(index, roots)
    for other in everything:
        if other.is_failures and other.slug == col.slug and other.records:
            failures = []
            for meta in other.records.values():
                path = path_from_meta(meta)
                if path:
                    failures.append(
                        (
                            path,
                            int(meta.get("size", -1)),
                            int(meta.get("mtime_ns", -1)),
                            str(meta.get("reason", "unreadable")),
                        )
                    )
            index.record_failures(failures)
    return len(records), dropped


def _set_roots(index: Any, roots: list[str]) -> None:
    """Roots are stored as text already; keep them as they were."""
    meta = {k: v for k, v in index._meta.items() if not k.startswith("hnsw:")}
    meta["roots"] = json.dumps(sorted(set(roots)))
    with suppress(Exception):
        index._col.modify(metadata=meta)
        index._meta = meta


# --------------------------------------------------------------------------- interrupted runs


class RunMarker:
    """A file present while an index run writes: left behind, the run was interrupted."""

    def __init__(self, location: str) -> None:
        self.path = Path(location) / RUN_MARKER

    def begin(self) -> bool:
        """Mark a run as started; returns whether the previous one never finished."""
        interrupted = self.path.exists()
        with suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(
                json.dumps({"pid": os.getpid(), "started": datetime.now().isoformat()})
            )
        return interrupted

    def end(self) -> None:
        with suppress(OSError):
            self.path.unlink(missing_ok=True)


def _main(argv: list[str]) -> int:
    if len(argv) in (3, 4) and argv[0] == "self-search" and argv[3:] in ([], ["-"]):
        # "-": the sample comes on stdin (from check), so no file is left behind.
        payload = sys.stdin.buffer.read() if argv[3:] else None
        print(json.dumps(_self_search_child(argv[1], int(argv[2]), payload)))
        return 0
    print("usage: python -m clipseek.store.repair self-search DB SAMPLE [-]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
