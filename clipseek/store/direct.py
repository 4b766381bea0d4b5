"""Searching an index straight from Chroma's files, without chromadb.

Importing chromadb takes about a second on a small machine: most of a cold
``clipseek query``, and of the app's first answer. Searching needs none of Chroma's
machinery: the vectors of 10,000 images are 20 MB that numpy reads in a tenth of a
second and ranks exactly (no HNSW approximation) in milliseconds.

It reads under the shared data lock, so it sees a committed state, and opens SQLite
read-only: a reader never writes. It keeps the vectors between searches and reads the
files again when a writer committed (the same fingerprint the snapshots use). It knows
Chroma's layout (:mod:`clipseek.store.chroma_format`) and nothing more: anything it does
not recognise (another layout, a ``where`` form it does not translate, a record it cannot
find a vector for) raises :class:`DirectUnavailable` inside, and from then on the index
answers through Chroma: slower, never wrong. ``clipseek serve`` keeps Chroma, whose graph
answers a busy server's many searches faster on large indexes once loaded.
"""

from __future__ import annotations

import contextlib
import sqlite3
import struct
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from clipseek.errors import DamagedIndexError
from clipseek.store.chroma_format import (
    COMPARE,
    DATABASE,
    HNSW_SEGMENT,
    SEGMENT_NAME,
    collection_metadata,
    collections,
    connect_readonly,
    label_map,
    logged_vectors,
    not_unit,
    read_hnsw_rows,
    read_metadata,
    record_rowids,
    rows_compared,
    rows_containing,
    rows_in,
    segments,
    stored_as_scalar,
    unit_rows,
    value_column,
)
from clipseek.store.image_index import ImageIndex, IndexFacts
from clipseek.store.integrity import damaged_message
from clipseek.store.keys import path_from_meta
from clipseek.store.records import COLLECTION_PREFIX, Hit, StoredEntry, stored_entry
from clipseek.store.snapshot import fingerprint
from clipseek.store.where import where_of

if TYPE_CHECKING:
    import numpy as np

    from clipseek.store.lock import DataLock


T = TypeVar("T")


class DirectUnavailable(Exception):
    """The files are not in a shape this reader knows for certain: ask Chroma."""


@dataclass
class _Collection:
    id: str
    name: str
    metadata: dict[str, Any]
    metadata_segment: str
    vector_segment: str | None


@dataclass
class _Vectors:
    """Every record's vector, row-aligned with its SQLite row id and record id."""

    fingerprint: tuple
    rowids: np.ndarray
    ids: list[str]
    matrix: np.ndarray
    position: dict[str, int]


def open_direct(
    location: str,
    lock: DataLock | None,
    model_key: str,
    collection_slug: str,
    fallback: Callable[[], ImageIndex | None],
    on_read: Callable[[tuple, bool], None] | None = None,
) -> DirectIndex | None:
    """The index of ``model_key`` read directly, or None when the database definitely
    holds no such collection. Raises :class:`DirectUnavailable` when unsure. ``on_read``
    hears of every read of the files (their fingerprint, and whether it was the first)."""
    name = COLLECTION_PREFIX + collection_slug
    with _reading(lock, Path(location)) as con:
        collection = _find_collection(con, name)
        if collection is None:
            return None
        found = str(collection.metadata.get("model_key", ""))
        if found != model_key:
            raise DirectUnavailable(f"{name} belongs to {found}")  # Chroma's path says so
        index = DirectIndex(location, lock, collection, fallback, on_read)
        # Read now, in the same look at the files: a query opens the index while its
        # model's session builds on another thread, and needs the vectors next.
        index._try(lambda: index._fresh(con), lambda: None)
    return index


@contextlib.contextmanager
def _reading(lock: DataLock | None, folder: Path) -> Iterator[sqlite3.Connection]:
    """The shared data lock, and ``chroma.sqlite3`` opened read-only while it is held;
    SQLite's errors are the reader's ``DirectUnavailable``."""
    with lock.shared() if lock is not None else contextlib.nullcontext():
        try:
            con = connect_readonly(folder / DATABASE)
        except sqlite3.Error as exc:
            raise DirectUnavailable(str(exc)) from None
        try:
            yield con
        except sqlite3.Error as exc:
            raise DirectUnavailable(str(exc)) from None
        finally:
            con.close()


def _find_collection(con: sqlite3.Connection, name: str) -> _Collection | None:
    try:
        rows = collections(con, name=name)
        if not rows:
            return None
        collection_id = rows[0][0]
        found = segments(con, collection_id)
        metadata = collection_metadata(con, collection_id)
    except sqlite3.Error as exc:
        raise DirectUnavailable(str(exc)) from None
    by_scope: dict[str, list[tuple[str, str]]] = {}
    for scope, segment_id, kind in found:
        by_scope.setdefault(str(scope), []).append((str(segment_id), str(kind)))
    meta_segments = by_scope.get("METADATA", [])
    vector_segments = by_scope.get("VECTOR", [])
    if len(meta_segments) != 1 or len(vector_segments) > 1:
        raise DirectUnavailable("an unexpected set of segments")
    vector = None
    if vector_segments:
        vector, kind = vector_segments[0]
        if kind != HNSW_SEGMENT or not SEGMENT_NAME.match(vector):
            raise DirectUnavailable(f"a vector segment of kind {kind}")
    return _Collection(str(collection_id), name, metadata, meta_segments[0][0], vector)


class DirectIndex(IndexFacts):
    """What a search asks of an :class:`~clipseek.store.ImageIndex`, answered from the
    files; anything else, or anything unexpected, goes to ``fallback`` (Chroma)."""

    def __init__(
        self,
        location: str,
        lock: DataLock | None,
        collection: _Collection,
        fallback: Callable[[], ImageIndex | None],
        on_read: Callable[[tuple, bool], None] | None = None,
    ) -> None:
        self.location = location
        self._folder = Path(location)
        self._lock = lock
        self._fallback_factory = fallback
        self._on_read = on_read
        #: Why the files could not be read; from then on Chroma answers everything.
        self.unavailable: str | None = None
        #: The collection was dropped or made anew (``--rebuild`` in another process).
        self.replaced = False
        self._vectors: _Vectors | None = None
        self._load_lock = threading.Lock()
        self._set_collection(collection)

    def _set_collection(self, collection: _Collection) -> None:
        meta = collection.metadata
        self._collection = collection
        self._meta = meta
        self.name = collection.name
        self.model_key = str(meta.get("model_key", ""))
        self.model_name = str(meta.get("model_name", self.model_key))
        self.dim = int(meta.get("dim", 0) or 0)
        self.schema = int(meta.get("clipseek_schema", 1) or 1)

    # -- Chroma, for what this reader does not do

    def chroma(self) -> ImageIndex:
        """The same index through Chroma: opened anew for each use, as a reader's snapshot
        is replaced when another process writes."""
        index = self._fallback_factory()
        if index is None:
            from clipseek.errors import IndexMissingError

            raise IndexMissingError(f"The index {self.name} at {self.location} is gone.")
        return index

    def _try(self, direct: Callable[[], T], chroma: Callable[[], T]) -> T:
        """``direct`` while the files can be read directly; ``chroma`` from the first time
        they cannot, for good."""
        if self.unavailable is None:
            try:
                return direct()
            except DirectUnavailable as exc:
                self.unavailable = str(exc) or type(exc).__name__
                self._vectors = None
        return chroma()

    def __getattr__(self, name: str) -> Any:
        # Only reached for what this class does not define (entries, failures, writes…).
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.chroma(), name)

    def refresh(self) -> None:
        """Read the files now if a writer changed them: a watcher that saw another process's
        write reads the new state before the next search."""
        self._try(self._read, lambda: None)

    def _read(self) -> _Vectors:
        with _reading(self._lock, self._folder) as con:
            return self._fresh(con)

    # -- facts

    def count(self) -> int:
        return self._try(lambda: len(self._read().ids), lambda: self.chroma().count())

    # -- reading

    def query(
        self,
        vector: np.ndarray,
        n: int,
        under: str | None = None,
        clauses: Sequence[Mapping[str, Any]] = (),
    ) -> list[Hit]:
        """The ``n`` nearest images by cosine similarity, exactly, best first."""
        return self._try(
            lambda: self._query(vector, n, under, clauses),
            lambda: self.chroma().query(vector, n, under=under, clauses=clauses),
        )

    def get(self, ids: Sequence[str]) -> dict[str, tuple[np.ndarray, Mapping[str, Any]]]:
        return self._try(lambda: self._get(ids), lambda: self.chroma().get(ids))

    def lookup(self, ids: Sequence[str]) -> dict[str, StoredEntry]:
        def direct() -> dict[str, StoredEntry]:
            return {id_: stored_entry(id_, meta) for id_, (_, meta) in self._get(ids).items()}

        return self._try(direct, lambda: self.chroma().lookup(ids))

    def _query(
        self, vector: np.ndarray, n: int, under: str | None, clauses: Sequence[Mapping[str, Any]]
    ) -> list[Hit]:
        import numpy as np

        if n <= 0:
            return []
        where = where_of(under, clauses, self.schema)
        query = np.asarray(vector, dtype=np.float32).ravel()
        query = query / (float(np.linalg.norm(query)) or 1.0)
        with _reading(self._lock, self._folder) as con:
            state = self._fresh(con)
            if state.matrix.shape[1] != query.shape[0]:
                raise DirectUnavailable("a query of another size")  # Chroma says it clearly
            scores = state.matrix @ query if len(state.ids) else np.zeros(0, np.float32)
            if where is not None:
                allowed = self._matching(con, where)
                keep = np.isin(state.rowids, np.fromiter(allowed, dtype=np.int64))
                scores = np.where(keep, scores, -np.inf)
                available = int(keep.sum())
            else:
                available = len(state.ids)
            k = min(n, available)
            if k == 0:
                return []
            top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(k)
            top = top[np.lexsort((top, -scores[top]))]
            metas = self._metadata(con, [int(state.rowids[i]) for i in top])
        hits = []
        for i in top:
            meta = metas.get(int(state.rowids[i]))
            if meta is None:
                raise DirectUnavailable("a record without metadata")
            hits.append(
                Hit(
                    id=state.ids[i],
                    path=path_from_meta(meta),
                    score=float(scores[i]),
                    metadata=meta,
                )
            )
        return hits

    def _get(self, ids: Sequence[str]) -> dict[str, tuple[np.ndarray, Mapping[str, Any]]]:
        if not ids:
            return {}
        with _reading(self._lock, self._folder) as con:
            state = self._fresh(con)
            rows = [state.position[i] for i in dict.fromkeys(ids) if i in state.position]
            metas = self._metadata(con, [int(state.rowids[r]) for r in rows])
        out = {}
        for r in rows:
            meta = metas.get(int(state.rowids[r]))
            if meta is None:
                raise DirectUnavailable("a record without metadata")
            out[state.ids[r]] = (state.matrix[r].copy(), meta)
        return out

    # -- the files

    def _metadata(self, con: sqlite3.Connection, rowids: list[int]) -> dict[int, dict[str, Any]]:
        return read_metadata(con, self._collection.metadata_segment, rowids)

    def _fresh(self, con: sqlite3.Connection) -> _Vectors:
        """The vectors as committed now (read again only when a writer changed the files);
        the caller holds the shared data lock."""
        with self._load_lock:
            current = fingerprint(self._folder)
            state = self._vectors
            if state is None or state.fingerprint != current:
                first = state is None
                self._vectors = None
                collection = _find_collection(con, self._collection.name)
                if collection is None or collection.id != self._collection.id:
                    self.replaced = True  # the store opens the new one
                    raise DirectUnavailable("the collection was replaced")
                self._set_collection(collection)
                state = self._vectors = self._load(con, current)
                if self._on_read is not None:
                    self._on_read(current, first)
            return state

    def _load(self, con: sqlite3.Connection, stamp: tuple) -> _Vectors:
        """The vector files, with the write log replayed over them; every record must end
        up with exactly one vector, or Chroma is asked instead. Rows keep the files' order,
        so the vectors are used where they were read, not copied again."""
        import numpy as np

        collection = self._collection
        rowid_of = record_rowids(con, collection.metadata_segment)
        logged = logged_vectors(con, collection.id)
        dim = self.dim
        ids: list[str] = []
        blocks: list[np.ndarray] = []
        segment = collection.vector_segment
        if segment is not None and (self._folder / segment / "header.bin").exists():
            try:
                rows = read_hnsw_rows(self._folder / segment)
            except (OSError, ValueError, struct.error) as exc:
                raise DirectUnavailable(str(exc)) from None
            if rows.header.count:
                labels = label_map(self._folder / segment)
                if labels is None:
                    raise DirectUnavailable("index_metadata.pickle cannot be read")
                if dim and rows.vectors.shape[1] != dim:
                    raise DirectUnavailable("vectors of another size")
                named = list(map(labels.get, rows.labels.tolist()))
                keep = [
                    i
                    for i, (record_id, gone) in enumerate(
                        zip(named, rows.deleted.tolist(), strict=True)
                    )
                    if not gone
                    and record_id is not None
                    and record_id in rowid_of
                    and record_id not in logged
                ]
                ids = [named[i] for i in keep]  # type: ignore[misc]
                everything = len(keep) == rows.header.count
                blocks.append(rows.vectors if everything else rows.vectors[np.asarray(keep)])
            del rows
        from_log = [r for r, v in logged.items() if v is not None and r in rowid_of]
        if from_log:
            extra = np.stack([logged[r] for r in from_log])  # type: ignore[misc]
            if dim and extra.shape[1] != dim:
                raise DirectUnavailable("vectors of another size")
            blocks.append(extra.astype(np.float32, copy=False))
            ids.extend(from_log)
        from_files = len(ids) - len(from_log)
        if len(ids) != len(rowid_of) or len(set(ids)) != len(ids):
            raise DirectUnavailable("records and vectors that do not match")
        if not blocks:
            matrix = np.zeros((0, dim), dtype=np.float32)
        else:
            matrix = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        del blocks
        rowids = np.array(list(map(rowid_of.__getitem__, ids)), dtype=np.int64)
        # Chroma stores unit vectors for a cosine index, and clipseek writes unit vectors:
        # anything else is damage, which would rank first (or NaN) for every query. It is
        # named, never divided into shape: repair (or a re-index) gives those images theirs.
        bad = np.flatnonzero(~unit_rows(np, matrix))
        if bad.size:
            metas = read_metadata(con, collection.metadata_segment, rowids[bad[:3]].tolist())
            names = ", ".join(path_from_meta(m) for m in metas.values())
            where = "data_level0.bin" if bad[0] < from_files else "Chroma's write log"
            detail = f"{where} holds {not_unit(int(bad.size))}: {names}"
            detail += ", ..." if bad.size > 3 else ""
            raise DamagedIndexError(damaged_message(self.location, detail))
        position = dict(zip(ids, range(len(ids)), strict=True))
        return _Vectors(stamp, rowids, ids, matrix, position)

    # -- filters

    def _matching(self, con: sqlite3.Connection, where: Mapping[str, Any]) -> set[int]:
        """Row ids of the records that satisfy a ``where`` clause of the forms clipseek
        writes (:func:`~clipseek.store.chroma.where_of`); any other form is Chroma's."""
        if len(where) != 1:
            raise DirectUnavailable("a where clause with several keys")
        ((key, condition),) = where.items()
        if key in ("$and", "$or"):
            parts = [self._matching(con, part) for part in condition]
            if not parts:
                raise DirectUnavailable(f"an empty {key}")
            return set.intersection(*parts) if key == "$and" else set.union(*parts)
        if not isinstance(condition, Mapping):
            condition = {"$eq": condition}
        if len(condition) != 1:
            raise DirectUnavailable("a condition with several operators")
        ((operator, value),) = condition.items()
        segment = self._collection.metadata_segment
        if operator == "$contains":
            _column(value)
            if stored_as_scalar(con, key):
                raise DirectUnavailable(f"{key} is stored as a single value")
            return rows_containing(con, segment, key, value)
        if operator == "$in":
            if not isinstance(value, list) or not value:
                raise DirectUnavailable("an $in without values")
            if len({_column(v) for v in value}) != 1:
                raise DirectUnavailable("an $in of mixed types")
            return rows_in(con, segment, key, value)
        if operator in COMPARE:
            column = _column(value)
            if operator != "$eq" and column in ("string_value", "bool_value"):
                raise DirectUnavailable("an ordering comparison of text")
            return rows_compared(con, segment, key, operator, value)
        raise DirectUnavailable(f"the operator {operator}")


def _column(value: Any) -> str:
    """The typed metadata column Chroma compares a filter value with."""
    column = value_column(value)
    if column is None:
        raise DirectUnavailable(f"a filter value of type {type(value).__name__}")
    return column
