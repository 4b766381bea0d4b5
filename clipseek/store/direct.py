"""Searching an index straight from Chroma's files, without chromadb.

Importing chromadb is most of a cold ``clipseek query``, and of the app's first answer.
Searching needs none of Chroma's machinery: numpy reads the vectors (2 KB an image) quickly
and ranks them exactly (no HNSW approximation); docs/PERFORMANCE.md, "The fast path".

It reads under the shared data lock, so it sees a committed state, and opens SQLite
read-only: a reader never writes. It keeps the vectors between searches and reads the
files again when a writer committed (the same fingerprint the snapshots use). It knows
Chroma's layout (:mod:`clipseek.store.chroma_format`) and nothing more: anything it does
not recognise (another layout, a ``where`` form it does not translate, a record it cannot
find a vector for) raises :class:`DirectUnavailable` inside, and from then on the index
answers through Chroma: slower, never wrong. A query, the app and ``clipseek serve`` on a
local index all read this way (a ``--chroma-url`` server is Chroma's).

When the index has a current vector cache (:mod:`clipseek.store.vector_cache`, written by
the indexer), the vectors come from there instead: one pass of numpy over a flat file,
and the metadata of the top answers only from SQLite, so a query builds no Python object
per picture. A missing, stale or damaged cache is passed over silently: the files are
read as described above.

A long-lived reader (the app, ``clipseek serve``: ``approximate=True``) answers unfiltered
searches from the partition beside a large cache (:mod:`clipseek.store.partition`): the
few lists nearest the query and the rows appended since it was built, rescored exactly;
filtered searches, one-shot queries and indexes without a current partition stay exact.
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

from clipseek.errors import DamagedIndexError, IndexMissingError
from clipseek.store.chroma_format import (
    COMPARE,
    DATABASE,
    HNSW_SEGMENT,
    SEGMENT_NAME,
    collection_metadata,
    collections,
    connect_readonly,
    ids_of,
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
from clipseek.store.chroma_format import (
    rowids_of as record_rowids_of,
)
from clipseek.store.image_index import ImageIndex, IndexFacts
from clipseek.store.integrity import damaged_message
from clipseek.store.keys import path_from_meta
from clipseek.store.records import (
    COLLECTION_PREFIX,
    Hit,
    StoredEntry,
    VectorSource,
    sorted_unique,
    stored_entry,
)
from clipseek.store.snapshot import fingerprint
from clipseek.store.vector_cache import CacheUnusable, CacheView, open_view
from clipseek.store.where import folder_where, where_of

if TYPE_CHECKING:
    import numpy as np

    from clipseek.store.lock import DataLock
    from clipseek.store.partition import Partition


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
    """Every record's vector, row-aligned with its SQLite row id and record id: read
    from Chroma's files, when there is no current cache."""

    fingerprint: tuple
    rowids: np.ndarray
    ids: list[str]
    matrix: np.ndarray
    position: dict[str, int]
    #: Every row is a live record.
    alive = None

    @property
    def count(self) -> int:
        return len(self.ids)

    @property
    def width(self) -> int:
        return int(self.matrix.shape[1])

    def scores(self, query: np.ndarray) -> np.ndarray:
        return self.matrix @ query

    def ids_for(self, con: sqlite3.Connection, segment: str, rows: Sequence[int]) -> list[str]:
        return [self.ids[r] for r in rows]

    def rows_for(self, con: sqlite3.Connection, segment: str, ids: Sequence[str]) -> list[int]:
        return [self.position[i] for i in dict.fromkeys(ids) if i in self.position]

    def row(self, position: int) -> np.ndarray:
        return self.matrix[position].copy()

    def all_rows(self) -> np.ndarray:
        return self.matrix


@dataclass
class _Cached:
    """The vectors from the index's vector cache: rows are positions in its file, some
    of them dead (replaced or deleted since it was written); record ids come from SQLite."""

    fingerprint: tuple
    view: CacheView

    @property
    def rowids(self) -> np.ndarray:
        return self.view.rowids

    @property
    def alive(self) -> np.ndarray | None:
        return self.view.alive if self.view.manifest.dead else None

    @property
    def count(self) -> int:
        return self.view.count

    @property
    def width(self) -> int:
        return self.view.dim

    def scores(self, query: np.ndarray) -> np.ndarray:
        return self.view.scores(query)

    def ids_for(self, con: sqlite3.Connection, segment: str, rows: Sequence[int]) -> list[str]:
        rowids = [int(self.view.rowids[r]) for r in rows]
        named = ids_of(con, segment, rowids)
        if len(named) != len(set(rowids)):
            raise CacheUnusable("a row of the cache names no record")
        return [named[r] for r in rowids]

    def rows_for(self, con: sqlite3.Connection, segment: str, ids: Sequence[str]) -> list[int]:
        rowid_of = record_rowids_of(con, segment, ids)
        wanted = [i for i in dict.fromkeys(ids) if i in rowid_of]
        places = self.view.positions_of([rowid_of[i] for i in wanted])
        if (places < 0).any():
            raise CacheUnusable("a record the cache does not hold")
        return [int(p) for p in places]

    def row(self, position: int) -> np.ndarray:
        return self.view.row(position)

    def all_rows(self) -> np.ndarray:
        return self.view.matrix()


def open_direct(
    location: str,
    lock: DataLock | None,
    model_key: str,
    collection_slug: str,
    fallback: Callable[[], ImageIndex | None],
    on_read: Callable[[tuple, bool], None] | None = None,
    approximate: bool = False,
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
        index = DirectIndex(location, lock, collection, fallback, on_read, approximate)
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
        approximate: bool = False,
    ) -> None:
        self.location = location
        #: Unfiltered queries may be answered approximately (see Store's ``approximate``).
        self.approximate = approximate
        self._folder = Path(location)
        self._lock = lock
        self._fallback_factory = fallback
        self._on_read = on_read
        #: Why the files could not be read; from then on Chroma answers everything.
        self.unavailable: str | None = None
        #: The collection was dropped or made anew (``--rebuild`` in another process).
        self.replaced = False
        #: Why the vector cache is not read (None while it is, or has not been looked at).
        self.cache_note: str | None = None
        #: The cache turned out damaged while being read: Chroma's files are read instead.
        self.cache_refused: str | None = None
        self._vectors: _Vectors | _Cached | None = None
        #: The approximate index beside the cache, when there is one that fits it.
        self._partition: Partition | None = None
        #: Why it is not used (None while it is, or has not been looked at).
        self.partition_note: str | None = None
        #: Whether the last search was answered from it.
        self.from_partition = False
        self._partition_refused: tuple | None = None
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
            raise IndexMissingError(f"The index {self.name} at {self.location} is gone.")
        return index

    def _try(self, direct: Callable[[], T], chroma: Callable[[], T]) -> T:
        """``direct`` while the files can be read directly; ``chroma`` from the first time
        they cannot, for good."""
        if self.unavailable is None:
            try:
                try:
                    return direct()
                except CacheUnusable as exc:
                    # Damage found while reading the cache: Chroma's files from now on.
                    self.cache_refused = self.cache_note = str(exc)
                    self._vectors = None
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

    @property
    def from_cache(self) -> bool:
        """Whether the last read of the vectors came from the vector cache."""
        return isinstance(self._vectors, _Cached)

    def _read(self) -> _Vectors | _Cached:
        with _reading(self._lock, self._folder) as con:
            return self._fresh(con)

    # -- facts

    def count(self) -> int:
        return self._try(lambda: self._read().count, lambda: self.chroma().count())

    # -- reading

    def query(
        self,
        vector: np.ndarray,
        n: int,
        under: str | None = None,
        clauses: Sequence[Mapping[str, Any]] = (),
    ) -> list[Hit]:
        """The ``n`` nearest images by cosine similarity, best first: exactly, but for an
        unfiltered search of an ``approximate`` reader where the cache has a partition."""
        return self._try(
            lambda: self._query(vector, n, under, clauses),
            lambda: self.chroma().query(vector, n, under=under, clauses=clauses),
        )

    def get(self, ids: Sequence[str]) -> dict[str, tuple[np.ndarray, Mapping[str, Any]]]:
        return self._try(lambda: self._get(ids), lambda: self.chroma().get(ids))

    def lookup(self, ids: Sequence[str]) -> dict[str, StoredEntry]:
        return self._try(lambda: self._lookup(ids), lambda: self.chroma().lookup(ids))

    def _lookup(self, ids: Sequence[str]) -> dict[str, StoredEntry]:
        """Records by id from SQLite alone (a file served by id needs no vector): after a
        writer's commit this reads no vector and no row table."""
        if not ids:
            return {}
        segment = self._collection.metadata_segment
        with _reading(self._lock, self._folder) as con:
            rowid_of = record_rowids_of(con, segment, ids)
            metas = self._metadata(con, list(rowid_of.values()))
        out = {}
        for id_, rowid in rowid_of.items():
            meta = metas.get(rowid)
            if meta is None:
                raise DirectUnavailable("a record without metadata")
            out[id_] = stored_entry(id_, meta)
        return out

    def holds_under(self, folder: str) -> bool:
        """Whether any record lies inside ``folder`` (by the path it was indexed under)."""

        def direct() -> bool:
            where = folder_where(folder, self.schema)
            if where is None:
                return self.count() > 0
            with _reading(self._lock, self._folder) as con:
                return bool(self._matching(con, where).size)

        return self._try(direct, lambda: self.chroma().holds_under(folder))

    def _query(
        self, vector: np.ndarray, n: int, under: str | None, clauses: Sequence[Mapping[str, Any]]
    ) -> list[Hit]:
        import numpy as np

        if n <= 0:
            return []
        where = where_of(under, clauses, self.schema)
        query = np.asarray(vector, dtype=np.float32).ravel()
        query = query / (float(np.linalg.norm(query)) or 1.0)
        segment = self._collection.metadata_segment
        with _reading(self._lock, self._folder) as con:
            state = self._fresh(con)
            if state.width != query.shape[0]:
                raise DirectUnavailable("a query of another size")  # Chroma says it clearly
            found = None
            if where is None and self.approximate and isinstance(state, _Cached):
                found = self._approximate(state.view, query, n)
            self.from_partition = found is not None
            if found is not None:
                rows = found[0].tolist()
                score_of = dict(zip(rows, found[1].tolist(), strict=True))
            else:
                rows, score_of = self._exact(con, state, query, n, where)
                if not rows:
                    return []
            ids = state.ids_for(con, segment, rows)
            metas = self._metadata(con, [int(state.rowids[i]) for i in rows])
        hits = []
        for i, id_ in zip(rows, ids, strict=True):
            meta = metas.get(int(state.rowids[i]))
            if meta is None:
                raise DirectUnavailable("a record without metadata")
            hits.append(Hit(id=id_, path=path_from_meta(meta), score=score_of[i], metadata=meta))
        return hits

    def _exact(
        self,
        con: sqlite3.Connection,
        state: _Vectors | _Cached,
        query: np.ndarray,
        n: int,
        where: Mapping[str, Any] | None,
    ) -> tuple[list[int], dict[int, float]]:
        """The rows of the ``n`` best records (among those ``where`` keeps) and their
        scores, best first, by scanning every vector."""
        import numpy as np

        scores = state.scores(query) if len(state.rowids) else np.zeros(0, np.float32)
        if where is not None:
            keep = np.isin(state.rowids, self._matching(con, where))
            if state.alive is not None:
                keep &= state.alive
            scores = np.where(keep, scores, -np.inf)
            available = int(keep.sum())
        else:
            available = state.count  # dead rows of a cache score -inf
        k = min(n, available)
        if k == 0:
            return [], {}
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(k)
        top = top[np.lexsort((top, -scores[top]))]
        rows = top.tolist()
        return rows, {i: float(scores[i]) for i in rows}

    # -- the approximate index

    def _approximate(
        self, view: CacheView, query: np.ndarray, n: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The rows of (about) the ``n`` best records and their exact scores, from the
        partition beside the cache (:mod:`clipseek.store.partition`); None when there is
        none that fits this cache, or it cannot answer ``n``: the caller scans exactly."""
        part = self._partition_of(view)
        if part is None or n * 8 > view.count:
            return None
        if not view.verified:
            view.verify()  # once per reader: its rows rescore the candidates (CacheUnusable)
        try:
            return part.search(view, query, n)
        except (OSError, ValueError) as exc:  # a file cut short under the mapping
            why = f"the partition cannot be read ({exc})"
            self._refuse_partition(part.stamp, why, view.manifest.epoch)
            return None

    def _partition_of(self, view: CacheView) -> Partition | None:
        """The partition of this cache, read again when its manifest moved (one ``stat``
        per search); None, with the reason in ``partition_note``, when it cannot be used."""
        from clipseek.store import partition as ivf

        stamp = ivf.manifest_stamp(view)
        if stamp is None:
            self._partition = None
            self.partition_note = "no partition"
            return None
        part = self._partition
        if part is not None and part.stamp == stamp and part.fits(view):
            return part
        if self._partition_refused == (stamp, view.manifest.epoch):
            return None  # looked at already: damaged or of another state
        try:
            part = ivf.open_partition(view)
        except ivf.PartitionUnusable as exc:
            self._refuse_partition(stamp, str(exc), view.manifest.epoch)
            return None
        self._partition = part
        self.partition_note = None
        return part

    def _refuse_partition(self, stamp: tuple, why: str, epoch: str | None = None) -> None:
        self._partition = None
        self.partition_note = why
        self._partition_refused = (stamp, epoch)

    def partition_lists(self, under: str | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """The partition's centres, and the list of each row of :meth:`vector_source`'s
        vectors (the same ``under``) as the partition stored it (-1 for rows appended
        since); None when there is no partition that fits the cache. Near-duplicates
        split their search by them."""
        import numpy as np

        def direct() -> tuple[np.ndarray, np.ndarray] | None:
            with _reading(self._lock, self._folder) as con:
                state = self._fresh(con)
                if not isinstance(state, _Cached):
                    return None
                part = self._partition_of(state.view)
                if part is None:
                    return None
                keep = self._kept(con, state, under)
            lists = np.full(state.view.manifest.rows, -1, dtype=np.int64)
            lists[part.positions] = np.repeat(np.arange(part.manifest.lists), np.diff(part.offsets))
            return part.centroids, lists if keep is None else lists[keep]

        return self._try(direct, lambda: None)

    def _get(self, ids: Sequence[str]) -> dict[str, tuple[np.ndarray, Mapping[str, Any]]]:
        if not ids:
            return {}
        segment = self._collection.metadata_segment
        with _reading(self._lock, self._folder) as con:
            state = self._fresh(con)
            rows = state.rows_for(con, segment, ids)
            names = state.ids_for(con, segment, rows)
            metas = self._metadata(con, [int(state.rowids[r]) for r in rows])
            vectors = [state.row(r) for r in rows]
        out = {}
        for r, name, vector in zip(rows, names, vectors, strict=True):
            meta = metas.get(int(state.rowids[r]))
            if meta is None:
                raise DirectUnavailable("a record without metadata")
            out[name] = (vector, meta)
        return out

    def vector_source(self, under: str | None = None) -> VectorSource:
        """The vectors for near-duplicates (optionally only inside ``under``), named
        on demand: only the pictures that have a close pair are ever looked up."""
        return self._try(
            lambda: self._source(under),
            lambda: VectorSource.from_arrays(*self.chroma().all_vectors(under=under)),
        )

    def _source(self, under: str | None) -> VectorSource:
        import numpy as np

        segment = self._collection.metadata_segment
        with _reading(self._lock, self._folder) as con:
            state = self._fresh(con)
            keep = self._kept(con, state, under)
            matrix = state.all_rows()
            if keep is None:
                places = np.arange(len(state.rowids))
                vectors = matrix
            else:
                places = np.flatnonzero(keep)
                vectors = np.asarray(matrix[places], dtype=np.float32)
        rowids = state.rowids

        def describe(rows: Sequence[int]) -> list[tuple[str, Mapping[str, Any]]]:
            wanted = [int(rowids[places[r]]) for r in rows]
            with _reading(self._lock, self._folder) as con:
                named = ids_of(con, segment, wanted)
                metas = self._metadata(con, wanted)
            return [(named.get(r, ""), metas.get(r, {})) for r in wanted]

        def positions(ids: Sequence[str]) -> list[int | None]:
            with _reading(self._lock, self._folder) as con:
                found = record_rowids_of(con, segment, ids)
            at = {int(rowids[p]): n for n, p in enumerate(places.tolist())}
            return [at.get(found[i]) if i in found else None for i in ids]

        return VectorSource(vectors, describe, positions)

    def _kept(
        self, con: sqlite3.Connection, state: _Vectors | _Cached, under: str | None
    ) -> np.ndarray | None:
        """Which rows are live pictures inside ``under`` (None: every row)."""
        import numpy as np

        where = folder_where(under, self.schema)
        keep = None if state.alive is None else state.alive.copy()
        if where is not None:
            inside = np.isin(state.rowids, self._matching(con, where))
            keep = inside if keep is None else keep & inside
        return keep

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
                previous = state
                self._vectors = None
                collection = _find_collection(con, self._collection.name)
                if collection is None or collection.id != self._collection.id:
                    self.replaced = True  # the store opens the new one
                    raise DirectUnavailable("the collection was replaced")
                self._set_collection(collection)
                state = self._vectors = self._state(con, current, previous)
                if self._on_read is not None:
                    self._on_read(current, first)
            return state

    def _state(
        self, con: sqlite3.Connection, stamp: tuple, previous: _Vectors | _Cached | None
    ) -> _Vectors | _Cached:
        """The vector cache when it copies the files' current state, else the files."""
        if self.cache_refused is None:
            try:
                view = open_view(
                    self.location,
                    self._collection.id,
                    self._collection.metadata_segment,
                    self.dim,
                    con,
                    previous.view if isinstance(previous, _Cached) else None,
                )
            except CacheUnusable as exc:
                self.cache_note = str(exc)
            else:
                self.cache_note = None
                return _Cached(stamp, view)
        return self._load(con, stamp)

    def _load(self, con: sqlite3.Connection, stamp: tuple) -> _Vectors:
        ids, rowids, matrix = load_vectors(con, self._folder, self._collection, self.dim)
        position = dict(zip(ids, range(len(ids)), strict=True))
        return _Vectors(stamp, rowids, ids, matrix, position)

    # -- filters

    def _matching(self, con: sqlite3.Connection, where: Mapping[str, Any]) -> np.ndarray:
        """Row ids of the records that satisfy a ``where`` clause of the forms clipseek
        writes (:func:`~clipseek.store.chroma.where_of`); any other form is Chroma's."""
        if len(where) != 1:
            raise DirectUnavailable("a where clause with several keys")
        ((key, condition),) = where.items()
        if key in ("$and", "$or"):
            import numpy as np

            parts = [self._matching(con, part) for part in condition]
            if not parts:
                raise DirectUnavailable(f"an empty {key}")
            out = parts[0]
            for part in parts[1:]:
                if key == "$and":
                    out = out[np.isin(out, part)]
                else:
                    out = sorted_unique(np.concatenate([out, part]))
            return out
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
            return _rowid_array(rows_containing(con, segment, key, value))
        if operator == "$in":
            if not isinstance(value, list) or not value:
                raise DirectUnavailable("an $in without values")
            if len({_column(v) for v in value}) != 1:
                raise DirectUnavailable("an $in of mixed types")
            return _rowid_array(rows_in(con, segment, key, value))
        if operator in COMPARE:
            column = _column(value)
            if operator != "$eq" and column in ("string_value", "bool_value"):
                raise DirectUnavailable("an ordering comparison of text")
            return _rowid_array(rows_compared(con, segment, key, operator, value))
        raise DirectUnavailable(f"the operator {operator}")


def _column(value: Any) -> str:
    """The typed metadata column Chroma compares a filter value with."""
    column = value_column(value)
    if column is None:
        raise DirectUnavailable(f"a filter value of type {type(value).__name__}")
    return column


def load_vectors(
    con: sqlite3.Connection, folder: Path, collection: _Collection, dim: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every record's id, row id and vector, from the vector files with the write log
    replayed over them; every record must end up with exactly one vector, or
    DirectUnavailable is raised. Rows keep the files' order, so the vectors are used
    where they were read, not copied again."""
    import numpy as np

    rowid_of = record_rowids(con, collection.metadata_segment)
    logged = logged_vectors(con, collection.id)
    ids: list[str] = []
    blocks: list[np.ndarray] = []
    segment = collection.vector_segment
    if segment is not None and (folder / segment / "header.bin").exists():
        try:
            rows = read_hnsw_rows(folder / segment)
        except (OSError, ValueError, struct.error) as exc:
            raise DirectUnavailable(str(exc)) from None
        if rows.header.count:
            labels = label_map(folder / segment)
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
        raise DamagedIndexError(damaged_message(str(folder), detail))
    return ids, rowids, matrix


def clipseek_collections(con: sqlite3.Connection) -> list[_Collection]:
    """Every clipseek index (main collections only) in the database."""
    out = []
    for _id, name in collections(con, prefixes=[COLLECTION_PREFIX]):
        with contextlib.suppress(DirectUnavailable):
            found = _find_collection(con, str(name))
            if found is not None:
                out.append(found)
    return out


def _rowid_array(rows: set[int]) -> np.ndarray:
    """Row ids as one sorted array (numpy masks, not Python sets, filter a large index)."""
    import numpy as np

    return np.sort(np.fromiter(rows, dtype=np.int64, count=len(rows)))
